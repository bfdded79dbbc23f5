"""WARM and ENS: averaging reward models in weight space and in prediction space.

WARM is one line of the paper, φ = (1/M) Σ φ_i, here with weights; `reference_merge` writes it plainly, and
`merge` below computes the same thing one checkpoint at a time (tested against it over every tensor):

    φ_WARM = Σ_i w_i φ_i / Σ_i w_i

    merged = merge([path_1, ..., path_M])                    # WARM: φ = Σ w_i φ_i / Σ w_i, uniform by default
    merged = merge(paths, weights=[3, 1])                   # non-uniform
    mid = interpolate(ckpt_a, ckpt_b, lam=0.5)               # (1-λ)·φ_a + λ·φ_b, for linear mode connectivity
    soup, kept = greedy_soup(ranked_paths, evaluate)         # add a model only if `evaluate` of the average rises
    check_compatible(reference, other, name)                 # raises MergeError naming the first mismatch
    ens = Ensemble([rm_1, ..., rm_M])                        # ENS: mean of the M rewards
    ens.reward_mean.fill_(m); ens.reward_std.fill_(s)        # optional normaliser, as a RewardModel has

A checkpoint is a plain dict, as written by `checkpoint.save`: {"model": state_dict, "model_config": dict,
"tokenizer": hash, ...simple values}. Every function takes checkpoint dicts or paths to them, and returns an
ordinary checkpoint dict that loads like any single reward model.

Memory: from paths, checkpoints are loaded one at a time and added to a running sum, so merging M models
needs about two checkpoints' worth of memory whatever M is (bench/merge_memory.py measures it).

Which tensors are averaged:
  * floating-point tensors (weights and float buffers): summed in float32 (float64 for float64 tensors), so a
    bf16 model loses no precision to M roundings, then cast back to their own dtype;
  * any other dtype (an integer counter, a bool mask) has no meaningful average: it must be equal in every
    input, and is copied;
  * tied tensors (the GPT's token embedding is also its output matrix) are averaged once and stay tied.
Metadata: the output keeps the entries every input agrees on (model_config, tokenizer, ...) and drops the
ones they disagree on (a member's val_acc or seed does not describe the average); it adds "merged_from"
(input file names) and "merge_weights" (the normalised weights).
"""

import math
import os
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn as nn

from warm_mini import checkpoint
from warm_mini.checkpoint import RunError

CheckpointLike = dict | str | os.PathLike


class MergeError(RunError):
    """Checkpoints that cannot be averaged: another architecture, tokenizer, set of tensors, shape or dtype."""


def reference_merge(states: Sequence[dict], weights: Sequence[float]) -> dict:
    """WARM as the paper defines it: Σ w_i φ_i / Σ w_i for every floating-point tensor of the state dicts, in float64.

    Needs every model in memory at once and checks nothing; `merge` is what the pipeline uses.
    """
    total = sum(weights)
    return {key: (sum(w * s[key].double() for w, s in zip(weights, states)) / total).to(t.dtype) if t.is_floating_point() else t
            for key, t in states[0].items()}


def check_compatible(reference: dict, other: dict, name: str) -> None:
    """Raise MergeError naming the first way `other` cannot be averaged with `reference`.

    Checked in this order: model_config (field by field), tokenizer, tensor names (missing, then extra),
    then each tensor's shape and dtype in the reference's order.
    """
    ref_cfg, cfg = reference.get("model_config") or {}, other.get("model_config") or {}
    for field in sorted(set(ref_cfg) | set(cfg)):
        if ref_cfg.get(field) != cfg.get(field):
            raise MergeError(f"cannot merge {name}: model_config.{field} is {cfg.get(field)!r}, "
                             f"the reference's is {ref_cfg.get(field)!r} (another architecture)")
    if reference.get("tokenizer") != other.get("tokenizer"):
        raise MergeError(f"cannot merge {name}: tokenizer {other.get('tokenizer')!r} differs from the reference's "
                         f"{reference.get('tokenizer')!r} (the same token id would mean another token)")
    ref_state, state = reference["model"], other["model"]
    for key in ref_state:
        if key not in state:
            raise MergeError(f"cannot merge {name}: it has no tensor {key!r}, which the reference has")
    for key in state:
        if key not in ref_state:
            raise MergeError(f"cannot merge {name}: it has a tensor {key!r}, which the reference has not")
    for key, ref in ref_state.items():
        t = state[key]
        if t.shape != ref.shape:
            raise MergeError(f"cannot merge {name}: {key!r} has shape {tuple(t.shape)}, "
                             f"the reference's is {tuple(ref.shape)}")
        if t.dtype != ref.dtype:
            raise MergeError(f"cannot merge {name}: {key!r} has dtype {t.dtype}, the reference's is {ref.dtype}")


def merge(checkpoints: Iterable[CheckpointLike], weights: Sequence[float] | None = None) -> dict:
    """WARM: the weighted average Σ w_i φ_i / Σ w_i of the checkpoints (uniform when weights is None).

    Inputs are checkpoint dicts or paths; paths are loaded one at a time. The first input is the reference
    the others must match (check_compatible), and its non-float tensors are the ones copied. Weights must be
    finite and non-negative with a positive sum; an input of weight 0 is still checked.
    """
    sources = list(checkpoints)
    if not sources:
        raise ValueError("merge needs at least one checkpoint")
    weights = [1.0] * len(sources) if weights is None else [float(w) for w in weights]
    if len(weights) != len(sources):
        raise ValueError(f"{len(weights)} weights for {len(sources)} checkpoints")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be finite and non-negative with a positive sum, got {weights}")
    total = _RunningSum()
    for i, (source, weight) in enumerate(zip(sources, weights)):
        # Loaded inside the call and never bound to a name here, so it is freed as soon as it has been added.
        total.add(_load(source), weight, _name(source, i))
    return total.average()


def interpolate(a: CheckpointLike, b: CheckpointLike, lam: float) -> dict:
    """(1-λ)·a + λ·b, the points of a linear-mode-connectivity curve; λ=0 gives a, λ=1 gives b, exactly."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    return merge([a, b], weights=[1.0 - lam, lam])


def greedy_soup(ranked: Sequence[CheckpointLike], evaluate: Callable[[dict], float]) -> tuple[dict, list[int]]:
    """Model-soup greedy selection: the uniform average of a subset of `ranked` (best first).

    Start from ranked[0]; try each next checkpoint in turn and keep it only if `evaluate` (higher is better,
    e.g. held-out accuracy) of the uniform average with it is strictly above the best so far, so a tie adds
    nothing. Returns (the average of the kept checkpoints, their indices in `ranked`).
    Only the running sum of the kept ones, the candidate being tried and the candidate average are in memory.
    """
    if not ranked:
        raise ValueError("greedy_soup needs at least one checkpoint")
    soup = _RunningSum()
    soup.add(_load(ranked[0]), 1.0, _name(ranked[0], 0))
    best, kept = evaluate(soup.average()), [0]
    for i in range(1, len(ranked)):
        ckpt = _load(ranked[i])
        name = _name(ranked[i], i)
        score = evaluate(soup.average(also=(ckpt, name)))
        if score > best:
            soup.add(ckpt, 1.0, name)
            best = score
            kept.append(i)
        del ckpt  # before the next load, or two inputs would be in memory at once
    return soup.average(), kept


def ensemble_rewards(rewards: torch.Tensor) -> torch.Tensor:
    """ENS from its members' rewards (M, ...): the paper's prediction ensemble, their mean over the M members."""
    return rewards.mean(dim=0)


class Ensemble(nn.Module):
    """ENS as a model: the mean of M reward models' rewards (`ensemble_rewards`).

    An nn.Module, so an ensemble goes wherever one reward model goes: .eval(), .to(device) and .parameters()
    reach every member. Members are modules mapping (idx, attention_mask) -> rewards (B,).
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        # Averaging M partly disagreeing rewards shrinks their spread (std < 1 on SFT samples even when each
        # member's is 1); a normaliser restores the scale, so that a KL coefficient means the same for ENS.
        self.register_buffer("reward_mean", torch.zeros(()))
        self.register_buffer("reward_std", torch.ones(()))

    def forward(self, idx, attention_mask=None):
        rewards = torch.stack([m(idx, attention_mask) for m in self.members])  # (M, B)
        return (ensemble_rewards(rewards) - self.reward_mean) / self.reward_std


class _RunningSum:
    """Σ w_i φ_i and Σ w_i over the checkpoints added so far; the average is their ratio.

    Only the first checkpoint's shapes and dtypes (as meta tensors, no memory), its metadata and its
    non-float tensors are kept besides the sum, never a reference to a loaded checkpoint.
    """

    def __init__(self):
        self.sums = {}  # key -> float32/float64 sum for float tensors, the tensor itself for non-float ones
        self.weight = 0.0
        self.names, self.weights = [], []
        self.reference = None  # the first checkpoint, its tensors replaced by meta tensors
        self.ties = None  # {key: earlier key it shares memory with}
        self.metadata = None  # the simple entries every input so far agrees on

    @torch.no_grad()  # inputs may be parameters that require grad: the sum must not record a graph
    def add(self, ckpt: dict, weight: float, name: str) -> None:
        state = ckpt["model"]
        if self.reference is None:
            self.reference = {"model_config": ckpt.get("model_config"), "tokenizer": ckpt.get("tokenizer"),
                              "model": {k: t.to("meta") for k, t in state.items()}}
            self.ties = _ties(state)
            self.metadata = {k: v for k, v in ckpt.items() if k != "model" and _plain(v)}
            for key, t in state.items():
                if key not in self.ties:
                    self.sums[key] = torch.zeros_like(t, dtype=_sum_dtype(t)) if t.is_floating_point() else t.clone()
        self._check(ckpt, name)
        for key, t in state.items():
            if key not in self.ties and t.is_floating_point():
                self.sums[key].add_(t, alpha=weight)
        self.weight += weight
        self.names.append(name)
        self.weights.append(weight)
        self.metadata = _agreed(self.metadata, ckpt)

    @torch.no_grad()
    def average(self, also: tuple[dict, str] | None = None) -> dict:
        """The average as a checkpoint dict; with also=(ckpt, name), the uniform average were ckpt added
        with weight 1, computed one tensor at a time without changing the sum."""
        extra, weight, names, weights = {}, self.weight, self.names, self.weights
        if also is not None:
            ckpt, name = also
            self._check(ckpt, name)
            extra, weight, names, weights = ckpt["model"], weight + 1.0, names + [name], weights + [1.0]
        state = {}
        for key, ref in self.reference["model"].items():
            if key in self.ties:
                state[key] = state[self.ties[key]]  # stays tied in memory and on disk
            elif ref.is_floating_point():
                total = self.sums[key] + extra[key] if key in extra else self.sums[key]
                state[key] = (total / weight).to(ref.dtype)
            else:
                state[key] = self.sums[key]
        metadata = self.metadata if also is None else _agreed(self.metadata, also[0])
        # file names, not paths: the same models merged from a moved or otherwise spelled run directory give the
        # same bytes, which name the PPO runs trained against them (warm_pipeline.rl_stage.ppo_dir)
        return {**metadata, "model": state, "merged_from": [os.path.basename(n) for n in names],
                "merge_weights": [w / weight for w in weights]}

    def _check(self, ckpt: dict, name: str) -> None:
        check_compatible(self.reference, ckpt, name)
        state = ckpt["model"]
        if _ties(state) != self.ties:
            raise MergeError(f"cannot merge {name}: its tied tensors {_ties(state)} differ from the reference's {self.ties}")
        for key, t in state.items():
            if not t.is_floating_point() and key not in self.ties and not torch.equal(t, self.sums[key]):
                raise MergeError(f"cannot merge {name}: {key!r} ({t.dtype}) differs from the reference's; "
                                 f"only floating-point tensors are averaged, the others must be equal")


def _load(source: CheckpointLike) -> dict:
    return source if isinstance(source, dict) else checkpoint.load(source)


def _name(source: CheckpointLike, i: int) -> str:
    """How error messages and "merged_from" call an input: its path, or its position if given in memory."""
    return f"input {i}" if isinstance(source, dict) else str(source)


def _sum_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _ties(state: dict) -> dict:
    """{key: earlier key} for each tensor that is the very same memory as an earlier one (tied weights)."""
    first, ties = {}, {}
    for key, t in state.items():
        where = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        if where in first:
            ties[key] = first[where]
        else:
            first[where] = key
    return ties


def _plain(value) -> bool:
    """A simple value (numbers, strings, lists and dicts of them): metadata that == can compare. Tensors
    outside the state dict (an optimizer state, say) describe one training run, not a merge."""
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_plain(v) for v in value.values())
    return value is None or isinstance(value, (bool, int, float, str))


def _agreed(metadata: dict, ckpt: dict) -> dict:
    """The entries of `metadata` that `ckpt` has too, with the same simple value."""
    return {k: v for k, v in metadata.items() if k in ckpt and _plain(ckpt[k]) and ckpt[k] == v}
