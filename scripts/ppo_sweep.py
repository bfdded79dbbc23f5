"""Held-out control reward against KL (or iterations) of PPO runs at several KL coefficients: the figure that chooses β.

The experiment behind the cpu preset's PPO settings (see docs/notebook.md): run rlhf.py with a sweep, e.g.

    python rlhf.py --run-dir runs/cpu --reward rm:best,warm:6 --rlhf.kl_coefs 0.005,0.02,0.05 --no-bon
    python scripts/ppo_sweep.py runs/cpu/rlhf/*_kl* --out docs/ppo_sweep.png

then read one panel per reward source (a line per β) and a table: each run's start, best and final
held-out control reward, with the KL at each. Runs that differ in something other than β (a learning rate, say)
take a name: `"lr 6e-4=runs/x/rlhf/rm5_kl0.05_5921f1"` draws that folder as the line "lr 6e-4".
`--against iteration` plots the control reward against PPO iterations instead, and `--panels name` draws one
panel per name with a line per source: the paper's Fig. 1b for each seed, from e.g.
`"seed 1=runs/s1/rlhf/rm2_kl0.05_44ff34" "seed 1=runs/s1/rlhf/warm6_kl0.05_b24ae1" "seed 2=..."`.
"""

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from warm_mini import checkpoint  # noqa: E402
from warm_eval.report import line_panels, markdown_table  # noqa: E402
from warm_pipeline import rl_stage  # noqa: E402

FOLDER = re.compile(r"(?P<kind>rm|ens|warm)?(?P<arg>\d+)?_?(?P<oracle>oracle)?_kl(?P<beta>[0-9.e-]+)_[0-9a-f]+")


def source_and_beta(folder: Path) -> tuple[str, float]:
    """("WARM M=6", 0.02) from rlhf/warm6_kl0.02_<hash>."""
    m = FOLDER.fullmatch(folder.name)
    if not m:
        raise SystemExit(f"error: {folder} is not a PPO run folder (<source>_kl<β>_<hash>)")
    source = "oracle" if m["oracle"] else rl_stage.label(f"{m['kind']}:{m['arg']}")
    return source, float(m["beta"])


def named(arg: str) -> tuple[str | None, Path]:
    """("lr 6e-4", folder) from "lr 6e-4=folder"; (None, folder) from a bare folder."""
    name, sep, folder = arg.rpartition("=")
    return (name, Path(folder)) if sep else (None, Path(arg))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=named,
                        help="PPO run folders (rlhf/<source>_kl<β>_<hash>) with eval.jsonl, each as [NAME=]FOLDER")
    parser.add_argument("--out", type=Path, help="write the figure here (PNG)")
    parser.add_argument("--against", choices=("kl", "iteration"), default="kl",
                        help="the figure's x axis: the held-out KL (Fig. 8) or the PPO iteration (Fig. 1b)")
    parser.add_argument("--panels", choices=("source", "name"), default="source",
                        help="one panel per reward source with a line per run (β or name), or one per name with a line per source")
    args = parser.parse_args()

    def reading_order(run):  # the panel first, then the line
        name, source, beta, _ = run
        return (source, beta, name) if args.panels == "source" else (name, source, beta)

    runs = [(name or "", *source_and_beta(folder), folder) for name, folder in args.runs]
    panels, rows = {}, []
    for name, source, beta, folder in sorted(runs, key=reading_order):
        evals = checkpoint.read_jsonl(folder / "eval.jsonl")
        kl, control = [e["eval/kl"] for e in evals], [e["eval/control_reward"] for e in evals]
        xs = kl if args.against == "kl" else [e["iteration"] for e in evals]
        line = name or f"β = {beta:g}"
        panel, line = (source, line) if args.panels == "source" else (line, source)
        panels.setdefault(panel, {})[line] = (xs, control)
        best = max(range(len(evals)), key=control.__getitem__)
        rows.append({"run": name, "β": beta, "source": source, "iterations": evals[-1]["iteration"], "start": control[0],
                     "best": control[best], "best at iteration": evals[best]["iteration"], "KL at best": kl[best],
                     "final": control[-1], "final KL": kl[-1]})
    print(markdown_table(rows))
    if args.out:
        xlabel = "KL(policy || SFT), held out" if args.against == "kl" else "PPO iteration"
        made = line_panels(panels, xlabel, "control reward, held out", args.out)
        print(f"figure: {args.out}" if made else "no figure: matplotlib is not installed")


if __name__ == "__main__":
    main()
