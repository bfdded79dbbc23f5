"""How much of a reward's variance can a policy change? Between documents against within a document.

PPO can only move the part of a reward that depends on the summary. A Bradley-Terry loss constrains
reward differences within a document and leaves each document's offset free, so a reward model may
vary more between documents than within one. This script samples K summaries per validation
document from the policy PPO starts from (at PPO's temperature), scores them with the oracle and
with each reward source, and prints, per source:

    within share    within-document variance / total variance (what a policy can act on)
    corr(oracle)    correlation with the oracle of the within-document deviations (is that part right?)
    centred share   the same share once each score has the score of the document's reference summary
                    subtracted (reward.Centred, what PPO trains against)

    python scripts/reward_variance.py --run-dir runs/repro/cpu-s0-clean --docs 200 --k 4
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from warm_mini import data, lm, reward  # noqa: E402
from warm_mini import tokenizer as tok  # noqa: E402
from warm_pipeline import cli, pairs_stage, rm_stage, sft_stage  # noqa: E402


def decompose(scores: torch.Tensor) -> tuple[torch.Tensor, float]:
    """scores (D, K) -> (within-document deviations (D, K), within share of the total variance)."""
    dev = scores - scores.mean(dim=1, keepdim=True)
    return dev, float(dev.pow(2).mean() / (scores - scores.mean()).pow(2).mean())


def main(argv=None):
    parser = cli.build_parser(__doc__)
    parser.add_argument("--docs", type=int, default=200, help="validation documents")
    parser.add_argument("--k", type=int, default=4, help="summaries sampled per document")
    parser.add_argument("--reward", default="rm:best,warm:2,warm:6,ens:6", help="reward sources, comma separated")
    args = parser.parse_args(argv)
    cfg, run_dir = cli.resolve(args)
    splits, enc = data.load_world(cfg), tok.load(sft_stage.tokenizer_path(run_dir))
    docs = splits.val[: args.docs]
    repeated = [d for d in docs for _ in range(args.k)]  # (D * K,), document-major
    policy = lm.load_model(sft_stage.rl_init(run_dir, cfg.rlhf.init_step), cfg.device)
    summaries = lm.sample_summaries(policy, enc, repeated, cfg.ppo.temperature, seed=cfg.seed, device=cfg.device)

    oracle = torch.tensor(reward.control_scores(enc, repeated, summaries)).view(-1, args.k)
    oracle_dev, share = decompose(oracle)
    print(f"{len(docs)} documents x {args.k} samples of SFT step {cfg.rlhf.init_step or 'final'} at T = {cfg.ppo.temperature}")
    print("| reward | within share | corr(oracle), within documents | centred share |\n|---|---|---|---|")
    print(f"| oracle | {share:.2f} | 1 | |")
    val_pairs = pairs_stage.load_or_make(run_dir, cfg, splits, enc, "val")
    for spec in args.reward.split(","):
        model = rm_stage.load_reward_source(spec, run_dir, cfg.device)
        with torch.no_grad():
            scores = reward.score_summaries(model, enc, repeated, summaries, device=cfg.device).view(-1, args.k)
            centring = reward.Centred(model, enc, reward.doc_of_prompt(enc, splits.val), splits.val, val_pairs)
            centred = reward.score_summaries(centring, enc, repeated, summaries, device=cfg.device) * centring.scale  # r - r_ref
        dev, share = decompose(scores)
        corr = torch.corrcoef(torch.stack([dev.flatten(), oracle_dev.flatten()]))[0, 1]
        print(f"| {spec} | {share:.2f} | {corr:.2f} | {float(dev.pow(2).mean() / centred.pow(2).mean()):.2f} |")


if __name__ == "__main__":
    cli.run_script(main)
