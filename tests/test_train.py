"""The shared training loop: schedule, parameter groups, kill-and-resume, data parallelism."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from warm_mini import checkpoint, config, data
from warm_mini.model import GPT
from warm_mini.train import Diverged, lr_at, param_groups, train

ROOT = Path(__file__).resolve().parents[1]
# A tiny run small enough for a test, with checkpoints often enough to be killed between them.
TINY = ["--preset", "tiny", "--world.n_docs", "120", "--pretrain.steps", "24", "--pretrain.warmup_steps", "4",
        "--pretrain.batch_size", "8", "--pretrain.ckpt_every", "4", "--sft.steps", "12", "--sft.warmup_steps", "2",
        "--sft.batch_size", "8", "--sft.ckpt_every", "4", "--sft.snapshot_every", "4", "--until", "sft"]


def run_train_rm(run_dir: Path, *extra: str, nproc: int = 1) -> subprocess.Popen:
    cmd = [sys.executable, "train_rm.py", *TINY, "--run-dir", str(run_dir), *extra]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *cmd[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in every run: same float sums
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def losses(run_dir: Path, stage: str) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics" / f"{stage}.jsonl").read_text().splitlines()]


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = config.TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_frac=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # monotone decay after warmup
    assert lr_at(100, cfg) == pytest.approx(0.1)


def test_no_weight_decay_on_norms_biases_or_embeddings():
    L = 2
    model = GPT(config.ModelConfig(vocab_size=64, block_size=16, n_layer=L, n_head=2, n_embd=8))
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    decayed = {id(p) for p in decay["params"]}
    assert all(p.dim() == 2 for p in decay["params"])
    assert id(model.tok_emb.weight) not in decayed  # the embedding, also the output layer (tied)
    for name, p in model.named_parameters():
        if name.endswith("bias") or ".ln_" in name or name.startswith("ln_f"):
            assert id(p) not in decayed, name
    assert len(decay["params"]) == 4 * L  # qkv, attn proj, mlp up, mlp proj
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_params()


def test_sft_batches_put_the_loss_on_summary_tokens_only():
    examples = [([1, 2, 3], [7, 8, 9]), ([4, 5], [6])]
    batch = data.sft_batches(examples, pad_id=0, batch_size=2, grad_accum=1, seed=0)(0, 0, 0, 1)
    for idx, targets in zip(batch["idx"], batch["targets"]):
        supervised = targets[targets >= 0].tolist()
        assert supervised in ([7, 8, 9], [6])
        prompt_len = 3 if supervised == [7, 8, 9] else 2
        assert idx[prompt_len - 1 : prompt_len - 1 + len(supervised)].tolist()[1:] == supervised[:-1]


def test_batches_split_exactly_across_ranks_and_micro_steps():
    stream = torch.arange(1000)
    whole = data.window_batches(stream, 8, 8, 1, seed=3)(5, 0, 0, 1)["idx"]
    parts = [data.window_batches(stream, 8, 8, 2, seed=3)(5, m, r, 2)["idx"] for r in range(2) for m in range(2)]
    assert torch.equal(torch.cat(parts), whole)


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    """SIGKILL a tiny run mid-stage; the restarted run must end bitwise equal to an uninterrupted one."""
    whole = tmp_path / "whole"
    finish(run_train_rm(whole))

    killed = tmp_path / "killed"
    proc = run_train_rm(killed)
    state = killed / "pretrain" / "state.pt"
    deadline = time.time() + 300
    while not (state.exists() and checkpoint.load(state)["step"] >= 8):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "pretrain" / "model.pt").exists(), "killed too late to test resumption"
    out = finish(run_train_rm(killed))
    assert "resuming" in out

    for stage in ("pretrain", "sft"):
        a = checkpoint.load(whole / stage / "model.pt")["model"]
        b = checkpoint.load(killed / stage / "model.pt")["model"]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{stage} weights differ after resumption"
    assert sorted(p.name for p in (killed / "sft").glob("step_*.pt")) == ["step_000004.pt", "step_000008.pt", "step_000012.pt"]
    # the steps logged between the last checkpoint and the kill were dropped and logged again: once each
    for stage in ("pretrain", "sft"):
        assert [r["step"] for r in checkpoint.read_jsonl(killed / "metrics" / f"{stage}.jsonl")] == \
            [r["step"] for r in checkpoint.read_jsonl(whole / "metrics" / f"{stage}.jsonl")]
    assert losses(killed, "pretrain") == losses(whole, "pretrain")


def test_two_gloo_processes_match_one_with_the_same_global_batch(tmp_path):
    """Data parallelism splits the global batch; the loss curve must match one process's.

    Pretraining windows have equal lengths, so the mean of the ranks' mean losses is the global mean,
    and the two curves differ only by float summation order: tolerance 1e-4 relative.
    """
    one, two = tmp_path / "one", tmp_path / "two"
    finish(run_train_rm(one))
    finish(run_train_rm(two, nproc=2))
    a, b = losses(one, "pretrain"), losses(two, "pretrain")
    assert len(a) == len(b) == 24 and not any(math.isnan(x) for x in a)
    assert a == pytest.approx(b, rel=1e-4)
    assert a[-1] < a[0]  # it learned something, so matching curves mean something


def test_a_diverging_run_stops_before_the_bad_step_and_keeps_the_last_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = GPT(config.ModelConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=8))
    cfg = config.TrainConfig(steps=10, batch_size=2, lr=1e-3, warmup_steps=0, ckpt_every=2, eval_every=100)
    batch_fn = lambda step, micro, rank, world: {"idx": torch.randint(0, 16, (2, 8)), "step": step}

    def loss_fn(m, batch):  # a forced divergence: the loss of step 5 (index 4) is NaN
        logits, _ = m(batch["idx"])
        return logits.float().pow(2).mean() * (float("nan") if batch["step"] == 4 else 1.0)

    with pytest.raises(Diverged, match=r"rm_7 diverged at step 5: loss nan.*learning rate.*state.pt \(step 4\)"):
        train(model, cfg, batch_fn, loss_fn, tmp_path, metrics_path=tmp_path / "m.jsonl", desc="rm_7")
    kept = checkpoint.load(tmp_path / "state.pt")
    assert kept["step"] == 4 and all(torch.isfinite(t).all() for t in kept["model"].values())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step never reached the weights
    assert [json.loads(line)["step"] for line in (tmp_path / "m.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
