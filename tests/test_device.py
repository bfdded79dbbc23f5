"""The gpu preset's fast paths, bf16 autocast and torch.compile, run here on CPU (the code has no CUDA-only
branch) and on CUDA as well where there is one: bench/gpu_check.sh runs this file on the GPU machine."""

import json
import math

import pytest
import torch
from test_ppo import toy_prompts, toy_trainer

from warm_mini import data
from warm_mini.config import ModelConfig, TrainConfig
from warm_mini.lm import lm_loss
from warm_mini.model import GPT
from warm_mini.train import autocast, train

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MODEL = ModelConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=32)


def train_tiny(out, device: str, dtype: str, compile: bool = False, steps: int = 6):
    """A tiny GPT trained with warm_mini.train.train; returns it and its per-step losses."""
    cfg = TrainConfig(steps=steps, batch_size=4, lr=3e-3, warmup_steps=1, eval_every=10**9, ckpt_every=10**9, compile=compile)
    stream = torch.randint(0, MODEL.vocab_size, (4000,), generator=torch.Generator().manual_seed(0))
    batches = data.window_batches(stream, MODEL.block_size, cfg.batch_size, cfg.grad_accum, seed=0)
    torch.manual_seed(0)
    model = train(GPT(MODEL), cfg, batches, lm_loss, out, device=device, dtype=dtype, metrics_path=out / "metrics.jsonl")
    return model, [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("device", DEVICES)
def test_bfloat16_autocast_computes_in_bf16_and_tracks_float32(tmp_path, device):
    model = GPT(MODEL).to(device)
    idx = torch.randint(0, MODEL.vocab_size, (2, 8), device=device)
    with autocast(device, "bfloat16"):
        assert model(idx)[0].dtype == torch.bfloat16
    with autocast(device, "float32"):
        assert model(idx)[0].dtype == torch.float32

    _, loss32 = train_tiny(tmp_path / "fp32", device, "float32")
    model16, loss16 = train_tiny(tmp_path / "bf16", device, "bfloat16")
    assert all(p.dtype == torch.float32 for p in model16.parameters())  # weights and optimizer stay float32
    assert loss16 != loss32  # it did run in bf16 ...
    for a, b in zip(loss16, loss32):  # ... about as well: bf16 keeps 8 bits of mantissa, ~0.4% per rounding
        assert math.isfinite(a) and abs(a - b) < 0.02 * b
    assert loss16[-1] < loss16[0]


@pytest.mark.parametrize("device", DEVICES)
def test_a_ppo_iteration_runs_in_bfloat16(device):
    trainer = toy_trainer(device=device, dtype="bfloat16")
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    prompt, mask = toy_prompts(32, seed=0)
    metrics, _ = trainer.step(prompt.to(device), mask.to(device))
    assert all(math.isfinite(v) for v in metrics.values())
    assert all(p.dtype == torch.float32 for p in trainer.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters()))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_trains_like_eager_and_saves_plain_weights(tmp_path, device):
    eager, loss_eager = train_tiny(tmp_path / "eager", device, "float32", steps=3)
    compiled, loss_compiled = train_tiny(tmp_path / "compiled", device, "float32", compile=True, steps=3)
    assert loss_compiled == pytest.approx(loss_eager, rel=1e-3)  # fused kernels reorder float sums
    saved = torch.load(tmp_path / "compiled" / "model.pt", weights_only=False)["model"]
    assert saved.keys() == eager.state_dict().keys()  # no "_orig_mod." prefix: a compiled run's checkpoint loads anywhere
