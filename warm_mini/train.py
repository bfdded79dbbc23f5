"""The one training loop, shared by pretraining, SFT and the reward models.

A stage hands `train` a model, a `batch_fn(step, micro_step, rank, world_size)` that returns the
micro-batch for that position (a pure function of its arguments, so a resumed run sees exactly the
data it would have seen), and a `loss_fn(model, batch)`. The loop owns everything else: AdamW, the
learning-rate schedule, clipping, accumulation, autocast, torch.compile, data parallelism,
evaluation, metrics, and checkpoints that let a killed run finish with the same weights as an
uninterrupted one.

Files in `out_dir`:
    state.pt         the latest resumable checkpoint (model, optimizer, step, RNG states)
    step_XXXXXX.pt   model-only snapshots along the trajectory (TrainConfig.snapshot_every)
    model.pt         the final weights; its presence marks the stage as finished
"""

import contextlib
import datetime
import math
import os
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from warm_mini import checkpoint
from warm_mini.checkpoint import RunError
from warm_mini.config import TrainConfig


# ----------------------------------------------------------------------------- distributed

def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str) -> str:
    """Join the process group when launched by torchrun (gloo on CPU, NCCL on GPU); returns the device."""
    if "RANK" not in os.environ or (dist.is_available() and dist.is_initialized()):
        return device
    cuda = device.startswith("cuda")
    # A rank may wait at a barrier for hours while the others finish their share (a PPO run, a reward model),
    # far past the default 30-minute timeout.
    dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=12))
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return device


def barrier() -> None:
    if dist_info()[1] > 1:
        dist.barrier()


def rank_zero_first(make: Callable[[], object]):
    """`make()` on rank 0, then on every other rank once rank 0 has finished: for load-or-create steps,
    whose files rank 0 writes and the other ranks then read."""
    rank, _ = dist_info()
    result = make() if rank == 0 else None
    barrier()
    return result if rank == 0 else make()


# ----------------------------------------------------------------------------- optimisation

def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay weight matrices only: not norms, biases, or embeddings (decaying those hurts and buys nothing)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:  # tied weights appear once
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    # fused: one kernel for all parameters, on CUDA and on CPU alike (5x faster steps than the default on CPU)
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, cfg.beta2), fused=True)


def autocast(device: str, dtype: str):
    """Forward passes in `dtype` where it pays (matmuls, attention) and float32 elsewhere; the weights, their
    gradients and the optimizer stay float32. bfloat16 needs no loss scaling (float32's exponent range)."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=getattr(torch, dtype))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr * cfg.min_lr_frac at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    min_lr = cfg.lr * cfg.min_lr_frac
    return min_lr + 0.5 * (cfg.lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


# ----------------------------------------------------------------------------- RNG state

def rng_state() -> dict:
    """Every generator a step may draw from, as tensors and plain values (weights_only-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_as_python_state(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_python_state(state):
    # weights_only loading turns tuples into lists; random.setstate wants the original nesting.
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


# ----------------------------------------------------------------------------- the loop

class Diverged(RunError):
    """A loss, gradient, reward or weight became inf or NaN: the run stops before it reaches a checkpoint."""


def train(
    model: torch.nn.Module,
    cfg: TrainConfig,
    batch_fn: Callable[[int, int, int, int], dict],
    loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor],
    out_dir: Path,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    eval_fn: Callable[[torch.nn.Module], dict] | None = None,
    metrics_path: Path | None = None,
    desc: str = "train",
    extra_state: dict | None = None,
    data_parallel: bool = True,
) -> torch.nn.Module:
    """Train `model` in place for cfg.steps optimizer steps, resuming from out_dir/state.pt if present.

    `extra_state` (e.g. the model config) is stored beside the weights in every checkpoint.
    Under torchrun, data_parallel=False trains this process's own model on whole batches (the reward
    models are trained one per rank, the embarrassingly parallel layout of the paper).
    """
    out_dir = Path(out_dir)
    rank, world = dist_info() if data_parallel else (0, 1)
    sync_ranks = barrier if data_parallel else (lambda: None)
    model.to(device)
    optimizer = make_optimizer(model, cfg)
    step = 0
    state_path = out_dir / "state.pt"
    if state_path.exists():
        state = checkpoint.load(state_path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step = state["step"]
        if rank == 0:
            tqdm.write(f"{desc}: resuming from {state_path} at step {step}")
    if rank == 0 and metrics_path is not None:  # what was logged after the checkpoint will be logged again
        checkpoint.truncate_jsonl(metrics_path, "step", step)

    # What runs the forward/backward: maybe compiled, maybe wrapped for data parallelism.
    runner = model
    if world > 1:
        runner = torch.nn.parallel.DistributedDataParallel(model)
    if cfg.compile:
        runner = torch.compile(runner)
    cast = autocast(device, dtype)

    def save_state():
        if rank == 0:
            payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state(), "step": step}
            checkpoint.save({**payload, **(extra_state or {})}, state_path)
        sync_ranks()

    def save_weights(path: Path):
        if rank == 0:
            checkpoint.save({"model": model.state_dict(), "step": step, **(extra_state or {})}, path)

    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, disable=rank != 0, dynamic_ncols=True)
    while step < cfg.steps:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum, tokens = 0.0, 0
        for micro in range(cfg.grad_accum):
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch_fn(step, micro, rank, world).items()}
            tokens += batch["idx"].numel() if "idx" in batch else 0
            # Gradients are all-reduced on the last micro-step only.
            sync = micro == cfg.grad_accum - 1 or world == 1
            with (contextlib.nullcontext() if sync else runner.no_sync()), cast:
                loss = loss_fn(runner, batch) / cfg.grad_accum
            loss.backward()
            loss_sum += loss.item()
        if world > 1:  # log the global batch's loss, not this rank's share
            loss_t = torch.tensor(loss_sum, device=device)
            dist.all_reduce(loss_t)
            loss_sum = loss_t.item() / world
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        if not (math.isfinite(loss_sum) and math.isfinite(grad_norm)):  # stop before the bad step touches the weights
            kept = f"{state_path} (step {checkpoint.load(state_path)['step']})" if state_path.exists() else "none yet"
            raise Diverged(f"{desc} diverged at step {step + 1}: loss {loss_sum}, gradient norm {float(grad_norm)} at "
                           f"learning rate {lr:.2e}; most likely the learning rate is too high: lower it and rerun. "
                           f"The last good checkpoint is kept: {kept}")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        dt = time.perf_counter() - t0
        record = {"step": step, "loss": loss_sum, "lr": lr, "grad_norm": float(grad_norm), "perf/tokens_per_s": tokens * world / dt}
        if eval_fn is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
            model.eval()
            with torch.no_grad(), cast:
                record.update(eval_fn(model))
            model.train()
        if rank == 0 and metrics_path is not None:
            checkpoint.append_jsonl(metrics_path, record)
        bar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{lr:.1e}", tok_s=f"{record['perf/tokens_per_s']:.0f}")
        bar.update(1)
        if cfg.snapshot_every and (step % cfg.snapshot_every == 0 or step == cfg.steps):
            save_weights(out_dir / f"step_{step:06d}.pt")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_state()
    bar.close()
    save_weights(out_dir / "model.pt")
    sync_ranks()
    return model
