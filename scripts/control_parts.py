"""What a policy's held-out summaries lose to the oracle, part by part: what PPO could still gain from it.

The control reward (world.score) adds named parts: the coverage of the main event's seven facts, and penalties
for invented facts, distractors, repetition, disfluency, length and a missing end (world.score_components).
This script redraws the samples a PPO evaluation sees (rl_stage.held_out_rollouts: the same documents and seed,
as scripts/kl_rows.py does) from each policy given, and prints two tables: the mean of each part, and per fact
of the main event the credit earned beside how often a summary invents a fact of that class. Read against
which facts the reward models check (scripts/rm_errors.py), it shows whether a starting policy's errors are
ones a learned reward can see. With --bon N it splits Best-of-N's picks instead: the summary each reward source
prefers among N SFT samples of each Best-of-N document (what makes a proxy's pick worse than plain sampling):

    python scripts/control_parts.py --run-dir runs/cpu sft:1250 sft:1500 rlhf/oracle_kl0.05_bc469e/policy_000065.pt
    python scripts/control_parts.py --run-dir runs/cpu --bon 64 warm:6 rm:best oracle
"""

import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kl_rows import redraw  # noqa: E402  (scripts/ is on the path when a script runs)
from warm_eval import policies  # noqa: E402
from warm_mini import data, lm, reward, world  # noqa: E402
from warm_mini import tokenizer as tok  # noqa: E402
from warm_pipeline import cli, rm_stage, sft_stage  # noqa: E402

# the class of an invented fact (world.invented_facts) that stands in for each main-event fact
INVENTED_CLASS = {"name": "PERSON", "action": "ACTION", "obj": "OBJ", "qty": "NUM", "place": "PLACE", "role": "ROLE", "time": "TIME"}


def policy_path(run_dir: Path, spec: str) -> Path:
    """`sft:STEP` (an SFT snapshot), `sft` (the final SFT model) or a checkpoint path relative to the run directory."""
    if spec == "sft" or spec.startswith("sft:"):
        step = spec.partition(":")[2]
        if step and not step.isdigit():
            raise SystemExit(f"error: {spec}: sft:STEP takes a step number, e.g. sft:1500")
        path = run_dir / "sft" / (f"step_{int(step):06d}.pt" if step else "model.pt")
    else:
        path = run_dir / spec
    if not path.exists():
        raise SystemExit(f"error: {path} does not exist")
    return path


def parts(docs, summaries: list[str]) -> tuple[dict, dict, dict]:
    """Means over the summaries: the oracle's parts, each fact's credit, and invented facts of each class."""
    n = len(docs)
    part, credit, invented = collections.Counter(), collections.Counter(), collections.Counter()
    for doc, s in zip(docs, summaries):
        part.update({k: v / n for k, v in world.score_components(doc, s).items()})
        credit.update({f: c / n for f, c in world.fact_credit(doc, s).items()})
        invented.update({c: 1 / n for c in world.invented_facts(doc, s)})
    return part, credit, invented


def ppo_rows(run_dir: Path, cfg, splits, enc, specs: list[str]) -> tuple[str, list]:
    """(what was sampled, rows) for each policy: the held-out samples of a PPO evaluation."""
    docs = splits.val[: cfg.rlhf.eval_docs]
    ref = lm.load_model(sft_stage.rl_init(run_dir, cfg.rlhf.init_step), cfg.device)
    oracle = rm_stage.load_reward_source("oracle", run_dir, cfg.device, enc, reward.doc_of_prompt(enc, docs))
    rows = []
    for spec in specs:
        kl, _, ids, _ = redraw(lm.load_model(policy_path(run_dir, spec), cfg.device), ref, oracle, enc, docs, cfg)
        rows.append((spec, kl.mean().item(), docs, [tok.decode(enc, r) for r in ids]))
    return f"{len(docs)} validation documents, KL to the SFT snapshot at step {cfg.rlhf.init_step or 'final'}", rows


def bon_rows(run_dir: Path, cfg, splits, enc, specs: list[str], n: int) -> tuple[str, list]:
    """(what was sampled, rows): plain sampling, then the pick of each reward source among n SFT samples per
    Best-of-N test document (policies.best_of_n_experiment's samples), with Best-of-N's KL."""
    docs = splits.test[: cfg.rlhf.bon_docs]
    repeated, samples = policies.bon_samples(run_dir, cfg, docs, enc, n)
    texts = [tok.decode(enc, s) for s in samples]
    rows = [("one sample", 0.0, docs, texts[::n])]
    for spec in specs:
        source = rm_stage.load_reward_source(spec, run_dir, cfg.device, enc, reward.doc_of_prompt(enc, docs))
        scores = reward.score_summaries(source, enc, repeated, samples, device=cfg.device).view(len(docs), n)
        picks = [texts[i * n + j] for i, j in enumerate(scores.argmax(1).tolist())]
        rows.append((f"{spec}, best of {n}", policies.bon_kl(n), docs, picks))
    return f"{len(docs)} test documents, {n} SFT samples each at temperature {cfg.rlhf.bon_temperature:g}", rows


def main(argv=None):
    parser = cli.build_parser(__doc__)
    parser.add_argument("policies", nargs="+",
                        help="sft, sft:STEP or checkpoint paths relative to the run directory; "
                             "with --bon, reward sources (rm:I, rm:best, ens:M, warm:M, oracle)")
    parser.add_argument("--bon", type=int, default=0, metavar="N",
                        help="split Best-of-N's picks instead: each reward source's choice among N SFT samples per document")
    args = parser.parse_args(argv)
    cfg, run_dir = cli.resolve(args)
    splits, enc = data.load_world(cfg), tok.load(sft_stage.tokenizer_path(run_dir))
    what, rows = (bon_rows(run_dir, cfg, splits, enc, args.policies, args.bon) if args.bon
                  else ppo_rows(run_dir, cfg, splits, enc, args.policies))

    table = [(name, kl, sum(map(world.score, docs, summaries)) / len(docs), *parts(docs, summaries)) for name, kl, docs, summaries in rows]
    names = list(table[0][3])  # the oracle's parts, in world.score_components' order
    print(f"{what}\n")
    print("| policy | control | KL | " + " | ".join(names) + " |\n|---|---|---|" + "---|" * len(names))
    for name, kl, control, part, _, _ in table:
        print(f"| {name} | {control:.3f} | {kl:.2f} | " + " | ".join(f"{part[k]:+.3f}" for k in names) + " |")
    print("\ncredit earned per fact of the main event (1 = always right), and in brackets the facts of its class a summary invents\n")
    print("| policy | " + " | ".join(f"{f} ({w:g})" for f, w in world.WEIGHTS.items()) + " |\n|---|" + "---|" * len(world.WEIGHTS))
    for name, _, _, _, credit, invented in table:
        print(f"| {name} | " + " | ".join(f"{credit[f]:.2f} ({invented[INVENTED_CLASS[f]]:.2f})" for f in world.WEIGHTS) + " |")


if __name__ == "__main__":
    cli.run_script(main)
