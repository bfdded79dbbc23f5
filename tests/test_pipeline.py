"""The tiny preset end to end, as a user runs it: train_rm.py, then merge.py; checks what they leave."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from warm_mini import checkpoint, reward

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

    # The reward sources a policy trains against: one RM, ENS and WARM share the reward interface.
    idx, mask = torch.randint(0, 50, (3, 9)), torch.ones(3, 9, dtype=torch.bool)
    warm_model = reward.load_reward_source("warm:2", run_dir)
    ens = reward.load_reward_source("ens:2", run_dir)
    single = [reward.load_reward_source(f"rm:{i}", run_dir) for i in ranked[:2]]
    with torch.no_grad():
        torch.testing.assert_close(ens(idx, mask), (single[0](idx, mask) + single[1](idx, mask)) / 2)
        assert warm_model(idx, mask).shape == (3,)
    with pytest.raises(ValueError, match="unknown reward source"):
        reward.load_reward_source("oracle:1", run_dir)

    # Everything finished is skipped on a second run.
    assert "finished earlier" in run("train_rm.py", run_dir)
