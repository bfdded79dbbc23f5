"""scripts/compare_runs.py, the before/after check of a refactor: it must pass on equal results that differ
in timings and fail on any other difference."""

import json
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_runs.py"


def fake_run(root: Path, weight: float, seconds: float) -> Path:
    (root / "rm").mkdir(parents=True)
    torch.save({"model": {"w": torch.tensor([1.0, weight])}, "rng": {"python": seconds}}, root / "rm" / "rm_0.pt")
    (root / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.5, "time/step": seconds, "perf/tokens_per_s": 1 / seconds}) + "\n")
    (root / "ppo_time.csv").write_text(f"run,update\nRM 0,{seconds}\n")
    return root


def compare(a: Path, b: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True)


def test_timings_are_ignored_and_results_are_not(tmp_path):
    a = fake_run(tmp_path / "a", 2.0, 1.0)
    out = compare(a, fake_run(tmp_path / "b", 2.0, 3.0))
    assert out.returncode == 0 and out.stdout.startswith("same: 2 files"), out.stdout
    out = compare(a, fake_run(tmp_path / "c", 2.0 + 1e-6, 1.0))
    assert out.returncode == 1 and "differs: rm/rm_0.pt" in out.stdout
    (tmp_path / "c" / "extra.json").write_text("{}")
    assert "only in" in compare(a, tmp_path / "c").stdout
