"""Preference pairs: summaries of one document, sampled from a policy and labeled by the world's labeler.

Splits (each from its own documents):
    train   SFT snapshots at temperature 1 (a mix of checkpoints, so that quality varies), K summaries per
            document (`--rm.summaries_per_doc`), plus the reference summary and E one-fact edits of it
            (`--rm.edited_per_doc`), every untied pair of them labeled; labels possibly corrupted
            (`--rm.corrupt`: the paper's 25% setting keeps the clean label too)
    val     the same policies on validation documents, one pair each: ranks the RMs and picks the soup
    test    the same policies on test documents, one pair each: in distribution
    ood     shifted policies on test documents, one pair each: the pretrained-only model, and SFT at a high
            temperature
and, apart from the splits that merge.py scores every reward model on:
    curriculum   the reference of each of `--rm.curriculum_docs` training documents and `--rm.curriculum_edits`
            one-fact edits of it (with `--rm.fluency_edits`, also two fluency edits), each edit paired with the
            reference, no policy sample: the shared first phase of reward-model training
The labeler compares the oracle's unclipped quality and abstains on ties: two summaries of equal quality (most
often two wordings of a perfect summary) have no right answer, so their label would be a coin flip that no
reward model can learn.
Here are the pieces (pairs, edits, labels); warm_pipeline/pairs_stage.py samples the summaries and caches each split.
"""

import itertools
import random
from dataclasses import dataclass

import tiktoken
import torch

from warm_mini import data, world
from warm_mini import tokenizer as tok
from warm_mini.config import Config

SPLITS = ("train", "val", "test", "ood")
LABELED = (*SPLITS, "curriculum")  # every labeled set, each with its own labeler seed
TRAINING = ("train", "curriculum")  # every untied pair labeled, labels corrupted at rm.corrupt


@dataclass
class Pairs:
    """N labeled pairs. `label[i]` is True when summary a is preferred; `clean` is the label before corruption."""

    doc: list[int]  # index of the document in its split's list
    a: list[list[int]]  # summary token ids, EOT included when the policy wrote it
    b: list[list[int]]
    score_a: torch.Tensor  # (N,) oracle quality (world.quality: the score before its floor), never shown to a reward model
    score_b: torch.Tensor
    label: torch.Tensor  # (N,) bool, what RMs train on
    clean: torch.Tensor  # (N,) bool, the label before corruption
    flipped: torch.Tensor  # (N,) bool

    def __len__(self):
        return len(self.doc)

    def head(self, n: int) -> "Pairs":
        """The first n pairs."""
        return Pairs(**{k: v[:n] for k, v in self.__dict__.items()})

    def chosen_rejected(self, clean: bool = False) -> tuple[list[list[int]], list[list[int]]]:
        """The preferred and the other summary of each pair, by the training labels or the clean ones."""
        label = self.clean if clean else self.label
        chosen = [a if l else b for a, b, l in zip(self.a, self.b, label.tolist())]
        rejected = [b if l else a for a, b, l in zip(self.a, self.b, label.tolist())]
        return chosen, rejected


TIE = 1e-6  # oracle scores closer than this are equal (a score is a float sum)


def docs_of(splits: data.Splits, split: str) -> list[world.Document]:
    return {"train": splits.train, "val": splits.val, "test": splits.test, "ood": splits.test, "curriculum": splits.train}[split]


def all_pairs(n_docs: int, k: int) -> list[tuple[int, int, int]]:
    """(document, summary s, summary t) for every pair s < t of each document's k summaries."""
    return [(i, s, t) for i in range(n_docs) for s, t in itertools.combinations(range(k), 2)]


def untied_pairs(scores: list[list[float]], first_only: bool) -> list[tuple[int, int, int]]:
    """(document, summary s, summary t) for the pairs the labeler judges: those whose oracle quality differs.

    `first_only` keeps one per document (the first in `all_pairs` order), so that pairs are independent.
    """
    pairs = [(i, s, t) for i, s, t in all_pairs(len(scores), len(scores[0])) if abs(scores[i][s] - scores[i][t]) > TIE]
    if not first_only:
        return pairs
    first = {}
    for pair in pairs:
        first.setdefault(pair[0], pair)
    return list(first.values())


def add_edits(cfg: Config, docs: list[world.Document], summaries: list[list[str]], n_edits: int,
              kinds: tuple[str, ...] = world.KEY_FACTS, stream: str = "train", fluency: bool = False) -> None:
    """Appends to each document's summaries its reference and `n_edits` one-fact edits of it, in one random template:
    different kinds drawn from `kinds`, or with rm.one_kind_per_doc all of one kind (they tie: no edit-vs-edit pair);
    with `fluency`, then the reference's two fluency edits (world.fluency_edits)."""
    rng = random.Random(f"{cfg.seed}:{stream}:edits")  # its own stream: the policy samples stay as they were
    fluency_rng = random.Random(f"{cfg.seed}:{stream}:fluency")  # and the one-fact edits stay as they were
    for doc, summ in zip(docs, summaries):
        t = rng.randrange(len(world.SUMMARY_TEMPLATES))
        chosen = [rng.choice(kinds)] * n_edits if cfg.rm.one_kind_per_doc else rng.sample(kinds, n_edits)
        reference = world.reference_summary(doc, template=t)
        edits = [world.edited_summary(doc, k, rng, t) for k in chosen]
        if fluency:
            edits += world.fluency_edits(reference, fluency_rng)
        summ += [s + world.EOT for s in [reference] + edits]


def labeled_pairs(cfg: Config, split: str, docs: list[world.Document], summaries: list[list[str]], enc: tiktoken.Encoding) -> Pairs:
    """The untied pairs of each document's summaries (all for training, the first elsewhere), labeled by the world's labeler."""
    scores = [[world.quality(d, s) for s in summ] for d, summ in zip(docs, summaries)]
    ids = [[tok.encode_with_specials(enc, s) for s in summ] for summ in summaries]
    pairs = untied_pairs(scores, first_only=split not in TRAINING)
    if split == "curriculum":  # the reference (summary 0) against each of its edits, never one edit against another
        pairs = [(i, s, t) for i, s, t in pairs if s == 0]
    score_a = torch.tensor([scores[i][s] for i, s, _ in pairs])
    score_b = torch.tensor([scores[i][t] for i, _, t in pairs])
    corrupt = cfg.rm.corrupt if split in TRAINING else 0.0  # evaluation labels stay clean
    labels = world.Labeler(cfg.world.label_tau, corrupt, seed=split_seed(cfg.seed, split)).label(score_a.numpy(), score_b.numpy())
    return Pairs(
        doc=[i for i, _, _ in pairs],
        a=[ids[i][s] for i, s, _ in pairs],
        b=[ids[i][t] for i, _, t in pairs],
        score_a=score_a, score_b=score_b,
        label=torch.as_tensor(labels.label), clean=torch.as_tensor(labels.clean), flipped=torch.as_tensor(labels.flipped),
    )


def split_seed(seed: int, split: str) -> int:
    """A seed per (run seed, split) that is the same in every process (str hashes are not)."""
    return seed * 10 + LABELED.index(split)
