"""Do two run directories hold the same results? The check behind a refactor that must not change behaviour.

    python scripts/compare_runs.py /tmp/before /tmp/after

Compares every file the two runs share: checkpoints tensor by tensor (bit-exact), JSON lines, CSV and
JSON value by value, leaving out timings (time/*, perf/*, seconds, shares of time), paths, and the global
Python and NumPy generator states a resumable stage saves (every result comes from generators the pipeline
seeds itself). Prints each difference and exits 1 if there is one. Figures and report.md are left out: they
hold the same numbers as the CSVs, and timings.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

TIMING = ("time", "seconds", "perf/", "tok_s", "share")
UNCOMPARED = ("merged_from", "python", "numpy")  # input paths; global generator states (under "rng")


def timing(key: str) -> bool:
    key = key.lower()
    return any(t in key for t in TIMING) or key.endswith(" s") or key in ("s", "mfu")


def plain(value):
    """A value with its timings, paths and global generator states dropped, tensors as lists, for ==."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if not timing(str(k)) and k not in UNCOMPARED}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dtype, tuple(value.shape), value.flatten().tolist())
    return value


def read(path: Path):
    if path.suffix == ".pt":
        return torch.load(path, map_location="cpu", weights_only=False)
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".csv":
        return list(csv.DictReader(path.open()))
    return path.read_bytes()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    skip = {".png", ".md", ".log"}
    files = lambda root: {p.relative_to(root) for p in root.rglob("*")
                          if p.is_file() and p.suffix not in skip and not timing(p.stem)}  # rlhf/ppo_time.csv: timings only
    a, b = files(args.a), files(args.b)
    differ = [f"only in {args.a}: {p}" for p in sorted(a - b)] + [f"only in {args.b}: {p}" for p in sorted(b - a)]
    for rel in sorted(a & b):
        if plain(read(args.a / rel)) != plain(read(args.b / rel)):
            differ.append(f"differs: {rel}")
    print("\n".join(differ) or f"same: {len(a & b)} files")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
