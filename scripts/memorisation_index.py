"""How much each reward model of a memorisation run (scripts/memorisation.sh) memorises its training labels.

Agreement with the flipped training labels is no measure alone: a model that memorises nothing agrees with
them about as often as it errs on pairs like them. So every model is also scored, against the clean labels,
on pairs made the same way from training documents it never saw (documents train_docs to 2 x train_docs - 1,
cached in warm/heldout_train.pt): its accuracy there, a, is what it earns without memorising. Then

    flipped, memorised = agreement with the flipped labels - (1 - a)
    kept, memorised    = accuracy on the kept (unflipped) pairs - a

are both 0 for a model that memorises nothing; the first is the paper's Fig. 4 quantity, its baseline removed.
ENS M is the mean of its members' rewards (reward_models.ensemble_by_split), WARM M the run's warm/warm_M.pt.

    python scripts/memorisation_index.py runs/sci/s0-mem300 runs/sci/s1-mem300 runs/sci/s2-mem300
"""

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from warm_eval.aggregate import fmt, stats  # noqa: E402
from warm_eval.report import markdown_table  # noqa: E402
from warm_eval.reward_models import ensemble_by_split  # noqa: E402
from warm_mini import checkpoint, data, prefs, reward  # noqa: E402
from warm_mini import tokenizer as tok  # noqa: E402
from warm_pipeline import cli, pairs_stage, rm_stage, sft_stage  # noqa: E402

COLUMNS = ("flipped agreement", "kept accuracy", "unseen documents", "flipped, memorised", "kept, memorised")


def unseen_pairs(run_dir: Path, cfg, splits, enc) -> prefs.Pairs:
    """Training-recipe pairs of the next rm.train_docs training documents, which the run's RMs never saw."""
    path = run_dir / "warm" / "heldout_train.pt"
    if not path.exists():
        n = cfg.rm.train_docs
        doubled = dataclasses.replace(cfg, rm=dataclasses.replace(cfg.rm, train_docs=2 * n))
        twice = pairs_stage.make_pairs(run_dir, doubled, splits, enc, "train")
        keep = [i for i, d in enumerate(twice.doc) if d >= n]
        checkpoint.save({k: [v[i] for i in keep] if isinstance(v, list) else v[keep] for k, v in twice.__dict__.items()}, path)
    return prefs.Pairs(**checkpoint.load(path))


def measures(rewards: dict, train: prefs.Pairs, unseen: prefs.Pairs) -> dict:
    """COLUMNS for one model, from its rewards {"train": (ra, rb), "unseen": (ra, rb)}."""
    (ta, tb), (ua, ub) = rewards["train"], rewards["unseen"]
    f = train.flipped
    flipped = reward.pair_accuracy(ta[f], tb[f], train.label[f])
    kept = reward.pair_accuracy(ta[~f], tb[~f], train.label[~f])
    a = reward.pair_accuracy(ua, ub, unseen.clean)
    return dict(zip(COLUMNS, (flipped, kept, a, flipped - (1 - a), kept - a)))


def run_table(run_dir: Path) -> list[dict]:
    """One row per model of the run: each RM, then ENS and WARM of each M that merge.py wrote."""
    cfg, run_dir = cli.resolve(cli.build_parser("").parse_args(["--run-dir", str(run_dir)]))
    splits, enc = data.load_world(cfg), tok.load(sft_stage.tokenizer_path(run_dir))
    pairs = {"train": pairs_stage.load_or_make(run_dir, cfg, splits, enc, "train"), "unseen": unseen_pairs(run_dir, cfg, splits, enc)}

    def score(path: Path) -> dict:
        model = reward.rm_from_checkpoint(checkpoint.load(path), cfg.device)
        return {s: reward.score_pairs(model, enc, splits.train, p, device=cfg.device) for s, p in pairs.items()}

    per_rm = {rm_stage.rm_index(p): score(p) for p in sorted((run_dir / "rm").glob("rm_*.pt"), key=rm_stage.rm_index)}
    rows = [{"model": f"RM {i}", **measures(r, *pairs.values())} for i, r in per_rm.items()]
    for ens_path in sorted((run_dir / "warm").glob("ens_*.pt"), key=lambda p: int(p.stem.split("_")[1])):
        m, members = ens_path.stem.split("_")[1], checkpoint.load(ens_path)["members"]
        rows.append({"model": f"ENS M={m}", **measures(ensemble_by_split([per_rm[i] for i in members]), *pairs.values())})
        rows.append({"model": f"WARM M={m}", **measures(score(run_dir / "warm" / f"warm_{m}.pt"), *pairs.values())})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories that finished train_rm.py and merge.py")
    args = parser.parse_args()
    tables = {run: run_table(run) for run in args.runs}
    for run, rows in tables.items():
        print(f"{run}:\n" + markdown_table([{"model": r["model"], **{c: f"{r[c]:.3f}" for c in COLUMNS}} for r in rows]) + "\n")
    if len(tables) < 2:
        return
    # over the runs: the mean single RM of each run, ENS and WARM; mean ± sd
    by_model: dict[str, list[dict]] = {}
    for rows in tables.values():
        singles = [r for r in rows if r["model"].startswith("RM ")]
        by_model.setdefault("mean RM", []).append({c: statistics.mean(r[c] for r in singles) for c in COLUMNS})
        for r in rows:
            if not r["model"].startswith("RM "):
                by_model.setdefault(r["model"], []).append(r)
    print(f"mean ± sd over {len(tables)} runs:\n"
          + markdown_table([{"model": m, **{c: fmt(stats([r[c] for r in rs])) for c in COLUMNS}} for m, rs in by_model.items()]))


if __name__ == "__main__":
    cli.run_script(main)
