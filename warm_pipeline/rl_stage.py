"""Stage 3: PPO of the SFT policy against one reward source, watched by the control reward.

A run trains against one reward source (rm:I, ens:M, warm:M or oracle) at one KL coefficient. It never
trains on the oracle (unless the oracle is the source): the oracle only scores its rollouts for the logs,
as objective/control_reward. Every `rlhf.eval_every` iterations the policy also summarises held-out
validation documents; their control reward, proxy reward and KL are logged and the policy is kept as a
snapshot, so that win rates can be judged at any step, and at the snapshot with the best control reward.

Files of one run, in run_dir/rlhf/<source>_kl<coef>_<hash>/, the hash naming the run's settings (the
ppo section, the evaluation, the seed) and its reward model's files, so changed settings or retrained
reward models start a new run beside the old one:
    state.pt             the latest resumable state (policy, value model, optimizer, generators)
    policy_XXXXXX.pt     the policy at each evaluation (policy_000000.pt is the SFT policy)
    train.jsonl          one line per iteration: PPOTrainer.step's metrics and objective/control_reward
    eval.jsonl           one line per evaluation: eval/control_reward, eval/proxy_reward, eval/kl
    done                 present once the run has finished
"""

import copy
import dataclasses
import hashlib
import json
import math
from pathlib import Path

import torch
from tqdm import tqdm

from warm_mini import checkpoint, data, lm, reward
from warm_mini import tokenizer as tok
from warm_mini.config import Config
from warm_mini.ppo import PPOTrainer, ValueModel, response_kl
from warm_mini.train import Diverged, dist_info
from warm_pipeline import pairs_stage, rm_stage, sft_stage


def sources(cfg: Config, run_dir: Path) -> list[str]:
    """The reward sources rlhf.rewards names, with rm:best resolved to the RM it is (default: the best single
    RM, ENS and WARM of all M)."""
    specs = [s.strip() for s in cfg.rlhf.rewards.split(",") if s.strip()]
    specs = specs or ["rm:best", f"ens:{cfg.rm.n_models}", f"warm:{cfg.rm.n_models}"]
    best = rm_stage.rm_index(rm_stage.ranked_reward_models(run_dir)[0])
    return [f"rm:{best}" if s == "rm:best" else s for s in specs]


def kl_coefs(cfg: Config) -> list[float]:
    return [float(x) for x in cfg.rlhf.kl_coefs.split(",") if x.strip()] or [cfg.ppo.kl_coef]


def label(source: str) -> str:
    """A reward source's name in tables and plots: RM 3, ENS M=6, WARM M=6, oracle."""
    kind, _, arg = source.partition(":")
    return {"rm": f"RM {arg}", "ens": f"ENS M={arg}", "warm": f"WARM M={arg}"}.get(kind, source)


def ppo_dir(run_dir: Path, cfg: Config, source: str, kl_coef: float) -> Path:
    """rlhf/<source>_kl<coef>_<hash of what shapes the run's results: its settings and its reward's files>."""
    reward_hash = hashlib.sha256(b"".join(p.read_bytes() for p in rm_stage.reward_files(source, run_dir))).hexdigest()
    ppo = dataclasses.asdict(dataclasses.replace(cfg.ppo, kl_coef=kl_coef))
    if not ppo["warmup_iterations"]:  # added later: hashed only when set, so that earlier runs keep their folders
        del ppo["warmup_iterations"]
    settings = {"ppo": ppo, "seed": cfg.seed,
                "eval_every": cfg.rlhf.eval_every, "eval_docs": cfg.rlhf.eval_docs, "reward": reward_hash}
    if cfg.rlhf.init_step:  # only when set, so that runs from the final SFT keep their folders
        settings["init_step"] = cfg.rlhf.init_step
    if ppo_seed(cfg) != cfg.seed:  # likewise
        settings["ppo_seed"] = ppo_seed(cfg)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:6]
    return Path(run_dir) / "rlhf" / f"{source.replace(':', '')}_kl{kl_coef:g}_{digest}"


def ppo_seed(cfg: Config) -> int:
    """The seed of PPO's sampling, prompts and minibatches: --rlhf.ppo_seed if set, else the run's --seed."""
    return cfg.seed if cfg.rlhf.ppo_seed < 0 else cfg.rlhf.ppo_seed


def snapshot_path(out: Path, iteration: int) -> Path:
    return out / f"policy_{iteration:06d}.pt"


def _prompts(enc, docs, device: str):
    prompt, mask = data.left_pad([data.prompt_ids(enc, d) for d in docs], enc.encode_single_token(tok.PAD))
    return prompt.to(device), mask.to(device)


def response_ids(rollout: dict) -> list[list[int]]:
    """A rollout's responses as token-id lists, padding dropped."""
    return [r[m].tolist() for r, m in zip(rollout["response"].cpu(), rollout["response_mask"].cpu())]


def held_out_rollouts(trainer: PPOTrainer, enc, docs, seed: int, batch_size: int = 64):
    """(documents, rollout) for each batch of held-out documents, each document's sample drawn from a generator
    seeded alike at every evaluation (so scripts/kl_rows.py can redraw what an evaluation saw)."""
    g = torch.Generator(device=trainer.device).manual_seed(seed)
    for i in range(0, len(docs), batch_size):
        chunk = docs[i : i + batch_size]
        yield chunk, trainer.rollout(*_prompts(enc, chunk, trainer.device), generator=g)


@torch.no_grad()
def evaluate_policy(trainer: PPOTrainer, enc, docs, seed: int) -> dict:
    """Control reward, proxy reward and KL to the reference of the policy's samples on held-out documents."""
    control, proxy, kl = [], [], []
    for chunk, ro in held_out_rollouts(trainer, enc, docs, seed):
        control += reward.control_scores(enc, chunk, response_ids(ro))
        proxy += ro["score"].tolist()
        kl += response_kl(ro["logprobs"], ro["ref_logprobs"], ro["response_mask"]).tolist()
    mean = lambda xs: sum(xs) / len(xs)
    return {"eval/control_reward": mean(control), "eval/proxy_reward": mean(proxy), "eval/kl": mean(kl)}


def check_finite(trainer: PPOTrainer, metrics: dict, name: str, state_path: Path) -> None:
    """Raise Diverged when an iteration's metrics or the updated weights are inf or NaN: the run stops before
    they reach a log or a checkpoint, and before the next rollout samples from a broken policy."""
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    bad += ["weights"] * (not bool(torch.stack([torch.isfinite(p).all() for p in trainer.params]).all()))  # one host sync
    if bad:
        kept = f"{state_path} (iteration {checkpoint.load(state_path)['iteration']})" if state_path.exists() else "none yet"
        raise Diverged(f"{name} diverged at iteration {trainer.iteration}: {', '.join(bad)} not finite at --ppo.lr "
                       f"{trainer.cfg.lr:g}; most likely the learning rate is too high: lower it and rerun. "
                       f"The last good checkpoint is kept: {kept}")


def train_policy(run_dir: Path, cfg: Config, source: str, kl_coef: float, splits: data.Splits, enc) -> Path:
    """PPO of the SFT policy (sft_stage.rl_init) against `source` at `kl_coef`, resuming if interrupted; returns the run's folder."""
    out = ppo_dir(run_dir, cfg, source, kl_coef)
    if (out / "done").exists():
        tqdm.write(f"{out.name}: finished earlier")
        return out
    device = cfg.device
    eot, _, pad = tok.special_ids(enc)
    policy = lm.load_model(sft_stage.rl_init(run_dir, cfg.rlhf.init_step), device)
    prompts = reward.doc_of_prompt(enc, splits.train + splits.val)  # every prompt PPO trains or is evaluated on
    reward_model = rm_stage.load_reward_source(source, run_dir, device, enc, prompts)
    if cfg.ppo.centre_rewards:
        reward_model = reward.Centred(reward_model, enc, prompts, splits.val, pairs_stage.load_or_make(run_dir, cfg, splits, enc, "val"))
    seed = ppo_seed(cfg)
    torch.manual_seed(seed)
    trainer = PPOTrainer(dataclasses.replace(cfg.ppo, kl_coef=kl_coef), policy, copy.deepcopy(policy),
                         ValueModel.from_policy(policy), reward_model, eot, pad, seed=seed, dtype=cfg.dtype)
    eval_docs = splits.val[: cfg.rlhf.eval_docs]

    def evaluate_and_save():
        it = trainer.iteration
        record = {"iteration": it, **evaluate_policy(trainer, enc, eval_docs, cfg.seed)}  # the same draws whatever ppo_seed
        checkpoint.append_jsonl(out / "eval.jsonl", record)
        checkpoint.save({"model": policy.state_dict(), "model_config": dataclasses.asdict(policy.config), "iteration": it},
                        snapshot_path(out, it))
        checkpoint.save(trainer.state_dict(), out / "state.pt")  # last: a kill before it repeats this evaluation

    resumed = (out / "state.pt").exists()
    if resumed:
        trainer.load_state_dict(checkpoint.load(out / "state.pt", map_location=device))
        tqdm.write(f"{out.name}: resuming at iteration {trainer.iteration}")
    for log in ("train.jsonl", "eval.jsonl"):  # what was logged after the checkpoint will be logged again
        checkpoint.truncate_jsonl(out / log, "iteration", trainer.iteration if resumed else -1)
    if not resumed:
        out.mkdir(parents=True, exist_ok=True)
        evaluate_and_save()  # iteration 0: the SFT policy

    bar = tqdm(total=cfg.ppo.iterations, initial=trainer.iteration, desc=f"ppo {label(source)} kl {kl_coef:g}", dynamic_ncols=True,
               disable=dist_info()[0] != 0)  # under torchrun, one bar: rank 0's
    while trainer.iteration < cfg.ppo.iterations:
        # the prompts of iteration i depend on the seed and i alone, so a resumed run sees the same ones
        rows = data.shuffled_rows(len(splits.train), seed, trainer.iteration, 0, 0, 1, cfg.ppo.batch_size, 1)
        docs = [splits.train[i] for i in rows]
        metrics, ro = trainer.step(*_prompts(enc, docs, device))
        check_finite(trainer, metrics, f"ppo {label(source)} kl {kl_coef:g}", out / "state.pt")
        control = reward.control_scores(enc, docs, response_ids(ro))
        metrics["objective/control_reward"] = sum(control) / len(control)
        checkpoint.append_jsonl(out / "train.jsonl", {"iteration": trainer.iteration, **metrics})
        bar.update(1)
        bar.set_postfix(kl=f"{metrics['objective/kl']:.2f}", proxy=f"{metrics['objective/proxy_reward']:.2f}",
                        control=f"{metrics['objective/control_reward']:.2f}")
        if trainer.iteration % cfg.rlhf.eval_every == 0 or trainer.iteration == cfg.ppo.iterations:
            evaluate_and_save()
    bar.close()
    checkpoint.atomic_write_text(out / "done", "")
    final = checkpoint.read_jsonl(out / "eval.jsonl")[-1]["eval/control_reward"]
    tqdm.write(f"ppo {label(source)} kl {kl_coef:g}: done, final held-out control reward {final:.3f}")
    return out


def best_iteration(out: Path) -> int:
    """The evaluation with the highest control reward on validation documents (the SFT policy counts too)."""
    return max(checkpoint.read_jsonl(out / "eval.jsonl"), key=lambda r: r["eval/control_reward"])["iteration"]


def budget_iteration(out: Path, kl_budget: float) -> int:
    """The last evaluation before the held-out KL first exceeds kl_budget: the run at a fixed KL, whatever its β."""
    last = 0
    for r in checkpoint.read_jsonl(out / "eval.jsonl"):
        if r["eval/kl"] > kl_budget:
            break
        last = r["iteration"]
    return last
