"""The tiny preset end to end, as a user runs it: train_rm.py, then merge.py; checks what they leave."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import torch

from warm_mini import checkpoint

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, run_dir: Path, *extra: str) -> str:
    out = subprocess.run([sys.executable, script, "--preset", "tiny", "--run-dir", str(run_dir), *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_tiny_pipeline_leaves_every_artifact(tmp_path):
    run_dir = tmp_path / "tiny"
    out = run("train_rm.py", run_dir)
    assert "reward models in" in out
    for path in ["config.json", "tokenizer.tiktoken", "pretrain/model.pt", "sft/model.pt", "rm/probe.pt",
                 *[f"prefs/{s}.pt" for s in ("train", "val", "test", "ood")], *[f"rm/rm_{i}.pt" for i in range(4)]]:
        assert (run_dir / path).exists(), path
    assert len(list((run_dir / "sft").glob("step_*.pt"))) >= 3  # the Baklava trajectory
    for line in (run_dir / "metrics" / "sft.jsonl").read_text().splitlines():
        assert math.isfinite(json.loads(line)["loss"])

    out = run("merge.py", run_dir, "--soup")
    assert "pairwise accuracy" in out and "greedy soup keeps" in out
    rows = list(csv.DictReader(open(run_dir / "warm" / "accuracy.csv")))
    assert [r["model"] for r in rows][-2:] == ["ENS M=4", "WARM M=4"]
    for r in rows:
        for column in ("val", "test", "ood"):
            assert 0.0 <= float(r[column]) <= 1.0
    lmc = list(csv.DictReader(open(run_dir / "warm" / "lmc.csv")))
    assert {r["pair"] for r in lmc} == {"same run", "data order", "learning rate", "Baklava init"}
    assert len(lmc) == 4 * 11

    # The merged checkpoint is an ordinary RM checkpoint whose weights are the top-2 average.
    warm = checkpoint.load(run_dir / "warm" / "warm_2.pt")
    ranked = json.loads((run_dir / "warm" / "summary.json").read_text())["ranked"]
    members = [checkpoint.load(run_dir / "rm" / f"rm_{i}.pt")["model"] for i in ranked[:2]]
    key = "head.weight"
    torch.testing.assert_close(warm["model"][key], (members[0][key] + members[1][key]) / 2)

    # Everything finished is skipped on a second run.
    assert "finished earlier" in run("train_rm.py", run_dir)
