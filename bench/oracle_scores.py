"""The oracle's scores for references, every perturbation and shortcut the tests try, and random summaries.

    python bench/oracle_scores.py > oracle_scores.md

The perturbations are the ones tests/test_world.py asserts to score below the reference, so this table
shows by how much. Printed as Markdown: mean, min and max over the tests' 200 documents.
"""

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import test_world  # noqa: E402

from warm_mini import world  # noqa: E402


def main():
    docs = test_world.DOCS
    summaries = {"reference + EOT": lambda d: d.reference + world.EOT, **test_world.PERTURBATIONS, **test_world.SHORTCUTS}
    print("| summary | mean | min | max |\n|---|---|---|---|")
    for name, make in summaries.items():
        scores = [world.score(d, s) for d in docs if (s := make(d)) is not None]
        print(f"| {name} | {statistics.mean(scores):+.2f} | {min(scores):+.2f} | {max(scores):+.2f} |")


if __name__ == "__main__":
    main()
