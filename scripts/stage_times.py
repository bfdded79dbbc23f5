"""How long each stage of a finished run took, read from the times its files were last written.

    python scripts/stage_times.py runs/cpu

Each stage's time is the gap between the file that ends it and the one that ended the stage before, starting at
the tokenizer (so the install check, the world and the tokenizer itself are not counted). A run that was
resumed, or whose files were copied, gives meaningless gaps. The notebook's stage tables come from here.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from warm_pipeline.rm_stage import rm_index  # noqa: E402

# (stage, the file whose time ends it), in the order the pipeline writes them; globs take their newest match
STAGES = [("pretraining", "pretrain/model.pt"), ("SFT", "sft/model.pt"), ("SFT quality", "sft/quality.json"),
          ("preference pairs", "prefs/*.pt"), ("linear probe", "rm/probe.pt"), ("curriculum", "rm/curriculum/model.pt")]


def newest(run_dir: Path, pattern: str) -> float | None:
    times = [p.stat().st_mtime for p in run_dir.glob(pattern)]
    return max(times) if times else None


def stage_ends(run_dir: Path) -> list[tuple[str, float]]:
    """(stage, time its last file was written) for every finished stage, in the order they ran."""
    ends = [(name, newest(run_dir, pattern)) for name, pattern in STAGES]
    rms = sorted(run_dir.glob("rm/rm_*.pt"), key=lambda p: p.stat().st_mtime)
    ends += [(f"reward model {rm_index(p)}", p.stat().st_mtime) for p in rms]
    ends.append(("merge.py", newest(run_dir, "warm/summary.json")))
    ppo = sorted(run_dir.glob("rlhf/*/done"), key=lambda p: p.stat().st_mtime)
    ends += [(f"PPO {p.parent.name}", p.stat().st_mtime) for p in ppo]
    ends.append(("Best-of-N, judging, report", newest(run_dir, "report.md")))
    return [(name, t) for name, t in ends if t is not None]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    start = newest(args.run_dir, "tokenizer.tiktoken")
    if start is None:
        parser.error(f"{args.run_dir} holds no run (no tokenizer.tiktoken)")
    previous = start
    for name, t in stage_ends(args.run_dir):
        print(f"{name:40s} {t - previous:7.1f} s   (from the start {t - start:7.1f} s)")
        previous = t


if __name__ == "__main__":
    main()
