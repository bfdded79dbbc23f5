"""From the world's text to batches: splits, token streams, padding, SFT examples.

Every batch function here is a pure function of (step, micro_step, rank, world_size): the data a step
sees is decided by the seed and the step alone, which is what lets a killed run resume exactly.
"""

import functools
import random
from dataclasses import dataclass

import tiktoken
import torch

from warm_mini import tokenizer as tok
from warm_mini import world
from warm_mini.config import Config
from warm_mini.model import IGNORE_INDEX


@dataclass
class Splits:
    """The world's documents, split once by the run's seed."""

    train: list[world.Document]
    val: list[world.Document]
    test: list[world.Document]


def load_world(cfg: Config) -> Splits:
    """The run's documents (regenerated from the seed: cheaper than storing them)."""
    docs = world.generate_documents(cfg.world.n_docs, cfg.seed)
    n_val = max(1, int(len(docs) * cfg.world.val_frac))
    n_test = max(1, int(len(docs) * cfg.world.test_frac))
    return Splits(train=docs[n_val + n_test :], val=docs[:n_val], test=docs[n_val : n_val + n_test])


# ----------------------------------------------------------------------------- padding


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack sequences of different lengths, padding on the left: (idx (B, T), mask (B, T))."""
    T = max(len(s) for s in seqs)
    idx = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.bool)
    for i, s in enumerate(seqs):
        if s:
            idx[i, T - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, T - len(s) :] = True
    return idx, mask


def prompt_ids(enc: tiktoken.Encoding, doc: world.Document) -> list[int]:
    """What the policy is conditioned on: the document, then the separator."""
    return tok.encode(enc, doc.text) + [enc.encode_single_token(world.SEP)]


# ----------------------------------------------------------------------------- batch functions


def batch_rows(step: int, micro: int, rank: int, world_size: int, batch_size: int, grad_accum: int) -> range:
    """Which rows of the global batch of `step` this (micro-step, rank) computes."""
    per_rank = batch_size // world_size
    per_micro = per_rank // grad_accum
    start = rank * per_rank + micro * per_micro
    return range(start, start + per_micro)


def check_batch(batch_size: int, grad_accum: int, world_size: int) -> None:
    if batch_size % (world_size * grad_accum):
        raise ValueError(f"batch_size {batch_size} must divide by processes x grad_accum = {world_size} x {grad_accum}")


def window_batches(stream: torch.Tensor, block_size: int, batch_size: int, grad_accum: int, seed: int):
    """Pretraining: random windows of the token stream; inputs (B, T) and next-token targets (B, T)."""

    def batch_fn(step: int, micro: int, rank: int, world_size: int) -> dict:
        check_batch(batch_size, grad_accum, world_size)
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        starts = torch.randint(0, len(stream) - block_size - 1, (batch_size,), generator=g)
        starts = starts[batch_rows(step, micro, rank, world_size, batch_size, grad_accum)]
        windows = torch.stack([stream[s : s + block_size + 1] for s in starts.tolist()])
        return {"idx": windows[:, :-1], "targets": windows[:, 1:]}

    return batch_fn


@functools.lru_cache(maxsize=4)
def permutation(n: int, seed: int, epoch: int) -> list[int]:
    """Epoch `epoch` visits n examples in this order."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def shuffled_rows(n: int, seed: int, step: int, micro: int, rank: int, world_size: int, batch_size: int, grad_accum: int) -> list[int]:
    """Indices into n examples for this (step, micro-step, rank): epochs of seeded permutations, back to back."""
    check_batch(batch_size, grad_accum, world_size)
    rows = []
    for i in batch_rows(step, micro, rank, world_size, batch_size, grad_accum):
        epoch, offset = divmod(step * batch_size + i, n)
        rows.append(permutation(n, seed, epoch)[offset])
    return rows


def sft_examples(enc: tiktoken.Encoding, docs: list[world.Document], seed: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, summary ids ending in EOT) for each document, each summary in a random template."""
    rng = random.Random(seed)
    eot = enc.encode_single_token(world.EOT)
    return [(prompt_ids(enc, d), tok.encode(enc, world.reference_summary(d, rng)) + [eot]) for d in docs]


def sft_batches(examples, pad_id: int, batch_size: int, grad_accum: int, seed: int):
    """SFT: the loss falls on the summary tokens only; rows are padded on the right, which causal
    attention never looks at, so no attention mask is needed."""

    def batch_fn(step: int, micro: int, rank: int, world_size: int) -> dict:
        rows = [examples[i] for i in shuffled_rows(len(examples), seed, step, micro, rank, world_size, batch_size, grad_accum)]
        T = max(len(p) + len(s) for p, s in rows) - 1
        idx = torch.full((len(rows), T), pad_id, dtype=torch.long)
        targets = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)
        for r, (p, s) in enumerate(rows):
            seq = torch.tensor(p + s, dtype=torch.long)
            idx[r, : len(seq) - 1] = seq[:-1]
            targets[r, len(p) - 1 : len(seq) - 1] = seq[len(p) :]
        return {"idx": idx, "targets": targets}

    return batch_fn
