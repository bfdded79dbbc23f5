"""Aggregate finished runs (one per seed and setting) into results/: CSV, PNG and README.md, with mean and
spread over seeds of the paper's Figs. 3, 4, 6, 8 and 9. scripts/reproduce.sh makes the runs and calls it.

    python scripts/aggregate.py runs/repro/cpu-s*-clean runs/repro/cpu-s*-corrupt
"""

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from warm_mini.aggregate import write_results  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories (train_rm.py, merge.py, rlhf.py)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="where the results go")
    args = parser.parse_args()
    root = Path.cwd()
    shown = [str(p.relative_to(root)) if p.resolve().is_relative_to(root) else str(p) for p in (p.resolve() for p in args.runs)]
    command = shlex.join(["python", "scripts/aggregate.py", *shown, *(["--out", str(args.out)] if args.out != Path("results") else [])])
    try:
        path = write_results(args.runs, args.out, command)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
