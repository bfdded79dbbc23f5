"""Where a reward model goes wrong: its accuracy on a split's pairs, grouped by which facts of the main event
the two summaries get differently right (name, qty, role, ...), against the noise-free oracle order; then,
per key fact, how often it scores a document's reference summary above the same summary with that one fact
replaced by one the document never mentions (world.edited_summary): which facts it checks at all.

The diagnostic that found the name blind spot, and then (its probe) that reward models trained on policy samples
alone check no fact but the number (see docs/notebook.md, the reward-model part):

    python scripts/rm_errors.py --run-dir runs/cpu rm/rm_0.pt warm/warm_6.pt
    python scripts/rm_errors.py --run-dir runs/cpu --split ood rm/rm_0.pt
    python scripts/rm_errors.py --run-dir runs/cpu curves/tmp/k4/model.pt     # the last model of rm_curves.py --name k4
    python scripts/rm_errors.py --run-dir runs/cpu sft sft:1                  # the SFT policy's own log-likelihood
    python scripts/rm_errors.py --run-dir runs/cpu --by invented rm/rm_0.pt   # grouped by what the worse summary invents

`sft` is not a reward model: it orders a pair by log pi_SFT(y | x), the summed log-probability the final SFT policy
gives each summary. It shows what the backbone every reward model starts from already knows about the facts;
`sft:1` reads the policy's LM head after its first block only.

A group such as `name+qty` holds the pairs where each summary gets a different one of those facts right
(or one gets both): the oracle weighs a name 0.25 and a quantity 0.1, so it prefers the right name. With
`--by invented`, a group such as `PLACE` holds the pairs whose worse summary invents a place the better one does not.
"""

import collections
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from warm_mini import checkpoint, data, lm, prefs, reward, world  # noqa: E402
from warm_mini import tokenizer as tok  # noqa: E402
from warm_eval import reward_models  # noqa: E402
from warm_pipeline import cli, pairs_stage, sft_stage  # noqa: E402


def differing_facts(doc: world.Document, a: str, b: str) -> str:
    """The main-event fields whose credit differs between summaries a and b, joined by '+' ('none' if none)."""
    ca, cb = world.fact_credit(doc, a), world.fact_credit(doc, b)
    return "+".join(f for f in world.KEY_FACTS if ca.get(f, 0) != cb.get(f, 0)) or "none"


def invented_by_worse(doc: world.Document, a: str, b: str, a_better: bool) -> str:
    """The classes of the facts that the oracle's worse summary invents and the better one does not ('none' if none)."""
    better, worse = (a, b) if a_better else (b, a)
    return "+".join(sorted(set(world.invented_facts(doc, worse)) - set(world.invented_facts(doc, better)))) or "none"


def load_scorer(name: str, run_dir: Path, cfg, enc):
    """A reward-model checkpoint (relative to the run directory), or `sft`: the final SFT policy's log-likelihood;
    `sft:L` reads its LM head after its first L blocks (the logit lens: where in the policy the facts are known)."""
    if name.partition(":")[0] == "sft":
        policy = lm.load_model(sft_stage.sft_snapshots(run_dir)[-1], cfg.device).eval()
        if ":" in name:
            policy.blocks = policy.blocks[: int(name.partition(":")[2])]
        return reward_models.LogLikelihood(policy, enc.encode_single_token(world.SEP))
    state = checkpoint.load(run_dir / name)
    if "model_config" not in state:  # rm_curves.py's models hold weights only: the run's shape, with any new blocks
        shape = dataclasses.asdict(sft_stage.model_config(cfg, enc))
        shape["n_layer"] = 1 + max(int(k.split(".")[2]) for k in state["model"] if k.startswith("backbone.blocks."))
        state["model_config"] = shape
    return reward.rm_from_checkpoint(state, cfg.device)


def main(argv=None):
    parser = cli.build_parser(__doc__)
    parser.add_argument("checkpoints", nargs="+", help="reward-model checkpoints, relative to --run-dir, or sft, sft:L (see above)")
    parser.add_argument("--split", choices=prefs.SPLITS, default="val")
    parser.add_argument("--by", choices=("facts", "invented"), default="facts",
                        help="group pairs by the main-event facts the two summaries get differently right, or by the facts "
                             "(PERSON, ROLE, NUM, ...) that the worse summary invents and the better does not")
    parser.add_argument("--groups", type=int, default=8, help="the largest groups shown")
    args = parser.parse_args(argv)
    cfg, run_dir = cli.resolve(args)
    splits, enc = data.load_world(cfg), tok.load(sft_stage.tokenizer_path(run_dir))
    pairs, docs = pairs_stage.load_or_make(run_dir, cfg, splits, enc, args.split), prefs.docs_of(splits, args.split)
    oracle_prefers_a = pairs.score_a > pairs.score_b
    texts = [(docs[d], tok.decode(enc, a), tok.decode(enc, b)) for d, a, b in zip(pairs.doc, pairs.a, pairs.b)]
    if args.by == "facts":
        groups = [differing_facts(*t) for t in texts]
    else:
        groups = [invented_by_worse(*t, a_better) for t, a_better in zip(texts, oracle_prefers_a.tolist())]
    for name in args.checkpoints:
        model = load_scorer(name, run_dir, cfg, enc)
        ra, rb = reward.score_pairs(model, enc, docs, pairs, device=cfg.device)
        right = ((ra >= rb) == oracle_prefers_a).tolist()
        by_group = collections.defaultdict(list)
        for g, r in zip(groups, right):
            by_group[g].append(r)
        print(f"{name}: {sum(right) / len(right):.3f} of {len(right)} {args.split} pairs ordered as the oracle orders them")
        for g, rs in sorted(by_group.items(), key=lambda kv: -len(kv[1]))[: args.groups]:
            print(f"  {g:32s} {len(rs):5d} pairs  {sum(rs) / len(rs):.3f}")
        probe_docs = docs[: pairs_stage.split_size(cfg, args.split)[0]]
        probe = reward_models.edit_probe(model, enc, probe_docs, cfg.device)
        print(f"  reference above a one-fact edit, {len(probe_docs)} documents: " + ", ".join(f"{k} {v:.2f}" for k, v in probe.items()))


if __name__ == "__main__":
    cli.run_script(main)
