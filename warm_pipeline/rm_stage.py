"""Stage 1c: the M reward models of a run, and the reward sources the later stages read from them.

The shared starts (a linear-probed head, then the curriculum on one-fact edits) are made once; each of the
M fine-tunings then takes its recipe from `reward.diversity` and writes rm/rm_<i>.pt, normalised on SFT
samples. `load_reward_source` turns a spec (rm:I, rm:best, ens:M, warm:M, oracle) into a reward model.
"""

import dataclasses
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from warm_mini import averaging, checkpoint, data, prefs, reward, world
from warm_mini.config import Config, ModelConfig
from warm_mini.train import barrier, dist_info, train
from warm_pipeline import sft_stage


def rm_path(run_dir: Path, i: int) -> Path:
    """The finished, normalised reward model i (its training state lives in rm/train_i/)."""
    return Path(run_dir) / "rm" / f"rm_{i}.pt"


def val_accuracy(model, enc, splits: data.Splits, pairs: dict) -> float:
    """Agreement with the validation labels, which rank the RMs and pick the soup."""
    scores = reward.score_pairs(model, enc, splits.val, pairs["val"], device=next(model.parameters()).device)
    return reward.pair_accuracy(*scores, pairs["val"].label)


def shared_starts(run_dir: Path, cfg: Config, splits: data.Splits, enc, pairs: dict, meta: dict) -> list[Path]:
    """The checkpoints the M reward models start from (relative to run_dir, oldest first), made once for all:

    1. the final SFT backbone with rm.head_layers new blocks, and a head fitted by linear probing on the training pairs;
    2. the curriculum: that model fine-tuned on the reference summaries and their one-fact edits alone, for
       rm.curriculum_steps. Mixed with policy samples, the edits teach a small RM few of the seven fact checks;
       alone, first, it learns six (docs/notebook.md). The starts are its last rm.baklava snapshots.
    With no curriculum the starts are the last rm.baklava SFT snapshots, each with the same new blocks and head.
    Every RM starting from shared weights keeps them in one basin, which is what lets WA work (Fig. 3 of the paper).
    """
    rank, _ = dist_info()
    snapshots = sft_stage.sft_snapshots(run_dir)
    probe_path = run_dir / "rm" / "probe.pt"
    if rank == 0 and not probe_path.exists():
        model = reward.sft_reward_model(checkpoint.load(snapshots[-1]), cfg.rm.head_layers, cfg.seed).to(cfg.device)
        head = reward.linear_probe(model, enc, splits.train, pairs["train"], splits.val, pairs["val"], cfg.rm.probe_steps, cfg.device)
        tqdm.write(f"linear probe on frozen SFT features: val accuracy {val_accuracy(_with_head(model, head), enc, splits, pairs):.3f}")
        checkpoint.save({"head": head}, probe_path)
    barrier()

    def start_model(sft: Path) -> reward.RewardModel:
        return _with_head(reward.sft_reward_model(checkpoint.load(sft), cfg.rm.head_layers, cfg.seed), checkpoint.load(probe_path)["head"])

    if not cfg.rm.curriculum_steps:
        starts = [Path("rm") / "start" / s.name for s in snapshots[-cfg.rm.baklava :]]
        for sft, start in zip(snapshots[-cfg.rm.baklava :], starts):
            if rank == 0 and not (run_dir / start).exists():
                checkpoint.save({"model": start_model(sft).state_dict(), **meta}, run_dir / start)
        barrier()
        return starts

    out = run_dir / "rm" / "curriculum"
    if not (out / "model.pt").exists():  # data-parallel under torchrun: every process takes part
        tcfg = dataclasses.replace(cfg.rm_train, steps=cfg.rm.curriculum_steps, snapshot_every=max(1, cfg.rm.curriculum_steps // 10))
        batches = reward.comparison_batches(enc, splits.train, pairs["curriculum"], tcfg.batch_size, tcfg.grad_accum, cfg.seed)
        torch.manual_seed(cfg.seed)
        train(start_model(snapshots[-1]), tcfg, batches, reward.rm_loss, out, device=cfg.device, dtype=cfg.dtype,
              eval_fn=lambda m: {"val/accuracy": val_accuracy(m, enc, splits, pairs)},
              metrics_path=run_dir / "metrics" / "rm_curriculum.jsonl", desc="rm curriculum (one-fact edits)", extra_state=meta)
    return [p.relative_to(run_dir) for p in sorted(out.glob("step_*.pt"))[-cfg.rm.baklava :]]


def train_reward_models(run_dir: Path, cfg: Config, splits: data.Splits, enc, pairs: dict) -> list[Path]:
    """The shared starts (linear probing, the curriculum), then M diverse fine-tunings of the whole model on the
    training pairs; under torchrun, rank r trains RMs r, r + N, ..."""
    rank, n_procs = dist_info()
    run_dir = Path(run_dir)
    sft_shape = checkpoint.load(sft_stage.sft_snapshots(run_dir)[-1])["model_config"]
    shape = ModelConfig(**{**sft_shape, "n_layer": sft_shape["n_layer"] + cfg.rm.head_layers})
    meta = {"model_config": dataclasses.asdict(shape), "tokenizer": sft_stage.tokenizer_hash(run_dir)}
    starts = shared_starts(run_dir, cfg, splits, enc, pairs, meta)

    for i in range(rank, cfg.rm.n_models, n_procs):
        if rm_path(run_dir, i).exists():
            tqdm.write(f"rm {i}: finished earlier")
            continue
        recipe = reward.diversity(cfg, i, starts)
        torch.manual_seed(recipe["data_seed"])
        model = reward.RewardModel(shape, dropout=recipe["dropout"])
        model.load_state_dict(checkpoint.load(run_dir / recipe["init"])["model"])
        tcfg = dataclasses.replace(cfg.rm_train, lr=recipe["lr"])
        batches = reward.comparison_batches(enc, splits.train, pairs["train"], tcfg.batch_size, tcfg.grad_accum, recipe["data_seed"])
        train(model, tcfg, batches, reward.rm_loss, run_dir / "rm" / f"train_{i}", device=cfg.device, dtype=cfg.dtype,
              eval_fn=lambda m: {"val/accuracy": val_accuracy(m, enc, splits, pairs)}, metrics_path=run_dir / "metrics" / f"rm_{i}.jsonl",
              desc=f"rm {i} (lr {recipe['lr']:g}, dropout {recipe['dropout']:g}, init {recipe['init']})",
              extra_state={**meta, **recipe}, data_parallel=False)
        acc = reward.normalise(model, enc, splits.val, pairs["val"], cfg.device)
        checkpoint.save({"model": model.state_dict(), **meta, **recipe, "val_accuracy": acc}, rm_path(run_dir, i))
        tqdm.write(f"rm {i}: val accuracy {acc:.3f}")
    barrier()
    return [rm_path(run_dir, i) for i in range(cfg.rm.n_models)]


def _with_head(model: reward.RewardModel, head: dict) -> reward.RewardModel:
    model.head.load_state_dict(head)
    return model


def rm_index(path: Path) -> int:
    """I of rm/rm_I.pt."""
    return int(Path(path).stem.split("_")[1])


def ranked_reward_models(run_dir: Path) -> list[Path]:
    """The finished reward models, best validation accuracy first; ties go to the lower index, so that
    merge.py's ENS and WARM members, rm:best and Best-of-N all rank alike."""
    by_index = sorted(Path(run_dir).glob("rm/rm_*.pt"), key=rm_index)
    accuracy = {p: checkpoint.read_value(p, "val_accuracy") for p in by_index}
    return sorted(by_index, key=lambda p: -accuracy[p])


def reward_files(spec: str, run_dir: Path) -> list[Path]:
    """The files a reward source is read from (their contents name the PPO runs trained against it)."""
    run_dir = Path(run_dir)
    kind, _, arg = spec.partition(":")
    if spec == "oracle":
        return [run_dir / "prefs" / "val.pt"]
    if spec == "rm:best":
        return ranked_reward_models(run_dir)[:1]
    if kind == "rm" and arg.isdigit():
        return [rm_path(run_dir, int(arg))]
    if kind in ("ens", "warm") and arg.isdigit():
        path = run_dir / "warm" / f"{kind}_{arg}.pt"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: run merge.py with --ms including {arg}")
        return [path] + ([rm_path(run_dir, i) for i in checkpoint.load(path)["members"]] if kind == "ens" else [])
    raise ValueError(f"unknown reward source {spec!r}: use rm:I, rm:best, ens:M, warm:M or oracle")


def load_reward_source(spec: str, run_dir: Path, device: str = "cpu", enc=None, prompts: dict | None = None) -> nn.Module:
    """The reward a policy is trained against, by name: `rm:I` (reward model I), `rm:best` (the best by
    validation accuracy), `ens:M` and `warm:M` (ENS and WARM of the top M, as merge.py wrote them) or
    `oracle` (the control reward itself; needs the tokenizer `enc` and `prompts`, the documents by prompt: doc_of_prompt).
    All share the reward interface and are normalised alike (mean 0, std 1 on SFT samples), so the caller
    never needs to know which one it holds, and one KL coefficient means the same for each."""
    files = reward_files(spec, run_dir)
    if spec == "oracle":
        if enc is None or prompts is None:
            raise ValueError("the oracle reward needs the tokenizer and the documents it scores")
        val = prefs.Pairs(**checkpoint.load(files[0]))
        return reward.OracleReward(enc, prompts, torch.cat([val.score_a, val.score_b]).clamp_min(world.FLOOR))  # quality -> score
    if not spec.startswith("ens:"):
        return reward.rm_from_checkpoint(checkpoint.load(files[0]), device)
    ens_file = checkpoint.load(files[0])
    ens = averaging.Ensemble([reward.rm_from_checkpoint(checkpoint.load(p), device) for p in files[1:]]).eval()
    ens.reward_mean.fill_(ens_file["reward_mean"])
    ens.reward_std.fill_(ens_file["reward_std"])
    return ens.to(device)
