"""Aggregate finished runs (one per seed and setting) into results/: CSV, PNG and README.md, with mean and
spread over seeds of the paper's Figs. 3, 4, 6, 8 and 9. scripts/reproduce.sh makes the runs and calls it.
A run that stopped after merge.py counts in the reward-model tables (Figs. 3 and 4) only.

    python scripts/aggregate.py runs/repro/cpu-s*-clean runs/repro/cpu-s*-corrupt
    python scripts/aggregate.py --rm-only runs/final/s*     # print Fig. 4's table of runs without rlhf.py
"""

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from warm_eval import report  # noqa: E402
from warm_eval.aggregate import RM_NEEDED, Run, accuracy, fmt, write_results  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path,
                        help="run directories that finished train_rm.py and merge.py (and rlhf.py, for the RL tables)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="where the results go")
    parser.add_argument("--rm-only", action="store_true",
                        help="print the accuracy table (Fig. 4) of runs that finished train_rm.py and merge.py; write nothing")
    args = parser.parse_args()
    if args.rm_only:
        return print_accuracy(args.runs)
    root = Path.cwd()
    shown = [str(p.relative_to(root)) if p.resolve().is_relative_to(root) else str(p) for p in (p.resolve() for p in args.runs)]
    command = shlex.join(["python", "scripts/aggregate.py", *shown, *(["--out", str(args.out)] if args.out != Path("results") else [])])
    try:
        path = write_results(args.runs, args.out, command)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}")
    print(f"results: {path}")


def print_accuracy(paths: list[Path]) -> None:
    """Accuracy by split of the best RM, the mean RM, ENS and WARM: mean ± sd over the runs of each setting."""
    try:
        runs = [Run.load(p, RM_NEEDED) for p in paths]
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}")
    rows = {}
    for r in accuracy(runs):
        rows.setdefault((r["setting"], r["model"]), {"setting": r["setting"], "model": r["model"]})[r["split"]] = fmt(r)
    print(f"seeds {sorted(run.seed for run in runs)}")
    print(report.markdown_table(list(rows.values())))


if __name__ == "__main__":
    main()
