"""Where a PPO snapshot's held-out KL comes from: the responses, and the tokens, that carry it.

rl_stage.evaluate_policy logs the mean over held-out documents of KL(policy || SFT) summed over each response.
This script redraws those responses (the same documents and seed) from the snapshots of one PPO run and
prints, per snapshot: the mean and median KL, the share of the total carried by the 5 largest rows, the
control reward of the rows above KL 1 against all rows, and the reward source's score of those rows minus
its score of the document's reference summary (does the reward model ask for them?); then the largest
rows, each with its largest single-token log-ratio log pi / pi_SFT.

    python scripts/kl_rows.py --run-dir runs/repro/cpu-s0-clean --ppo-run runs/repro/cpu-s0-clean/rlhf/rm5_kl0.05_da4148 \
        --iterations 0,5,10,50 --reward rm:5
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from warm_mini import data, lm, reward  # noqa: E402
from warm_mini import tokenizer as tok  # noqa: E402
from warm_mini.ppo import PPOTrainer, ValueModel, response_kl  # noqa: E402
from warm_pipeline import cli, rl_stage, rm_stage, sft_stage  # noqa: E402


@torch.no_grad()
def redraw(policy, ref, source, enc, docs, cfg):
    """rl_stage.evaluate_policy's rollouts of `policy`, scored by `source`: per-row KL (N,), per-token log-ratios
    [N lists], response ids [N lists], scores (N,)."""
    eot, _, pad = tok.special_ids(enc)
    trainer = PPOTrainer(cfg.ppo, policy, ref, ValueModel.from_policy(policy), source, eot, pad, seed=cfg.seed, dtype=cfg.dtype)
    kl, ratios, ids, scores = [], [], [], []
    for _, ro in rl_stage.held_out_rollouts(trainer, enc, docs, cfg.seed):
        logp, ref_logp, mask = ro["logprobs"], ro["ref_logprobs"], ro["response_mask"]
        kl += response_kl(logp, ref_logp, mask).tolist()
        ratios += [(a - b)[m].tolist() for a, b, m in zip(logp, ref_logp, mask)]
        ids += rl_stage.response_ids(ro)
        scores += ro["score"].tolist()
    return torch.tensor(kl), ratios, ids, torch.tensor(scores)


def main(argv=None):
    parser = cli.build_parser(__doc__)
    parser.add_argument("--ppo-run", type=Path, required=True, help="a PPO run folder, rlhf/<source>_kl<β>_<hash>")
    parser.add_argument("--iterations", default="0,5,10", help="snapshots to read, comma separated")
    parser.add_argument("--reward", default="rm:best", help="the reward source to score the rows with")
    parser.add_argument("--show", type=int, default=3, help="largest rows printed per snapshot")
    args = parser.parse_args(argv)
    cfg, run_dir = cli.resolve(args)
    splits, enc = data.load_world(cfg), tok.load(sft_stage.tokenizer_path(run_dir))
    docs = splits.val[: cfg.rlhf.eval_docs]
    ref = lm.load_model(sft_stage.rl_init(run_dir, cfg.rlhf.init_step), cfg.device)
    source = rm_stage.load_reward_source(args.reward, run_dir, cfg.device)
    eot = tok.special_ids(enc)[0]
    ref_score = reward.score_summaries(source, enc, docs, [tok.encode(enc, d.reference) + [eot] for d in docs], device=cfg.device)
    for it in (int(x) for x in args.iterations.split(",")):
        policy = lm.load_model(rl_stage.snapshot_path(args.ppo_run, it), cfg.device)
        kl, ratios, ids, scores = redraw(policy, ref, source, enc, docs, cfg)
        control = torch.tensor(reward.control_scores(enc, docs, ids))
        over = scores - ref_score
        big, top = kl > 1, kl.argsort(descending=True)[: args.show].tolist()
        share = kl[kl.argsort(descending=True)[:5]].sum() / kl.sum() if kl.sum() > 0 else float("nan")
        rows = (f"{int(big.sum())} rows above KL 1: control {control[big].mean():.3f} (all rows {control.mean():.3f}), "
                f"{args.reward} minus reference {over[big].mean():+.2f} (other rows {over[~big].mean():+.2f})"
                if big.any() else f"no row above KL 1; control {control.mean():.3f}")
        print(f"iteration {it}: KL mean {kl.mean():.3f}, median {kl.median():.3f}, top-5 share {share:.2f}; {rows}")
        for j in top:
            t = max(range(len(ratios[j])), key=ratios[j].__getitem__) if ratios[j] else 0
            print(f"    KL {kl[j]:5.2f}  control {control[j]:+.2f}  {args.reward}-ref {over[j]:+.2f}  "
                  f"largest token log-ratio {ratios[j][t] if ratios[j] else 0:.1f}: {enc.decode(ids[j])[:110]!r}")


if __name__ == "__main__":
    main()
