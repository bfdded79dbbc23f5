"""Time our BPE trainer against the textbook one, and against the 10 s target.

    python bench/tokenizer.py            # pin to one core with: taskset -c 0 python bench/tokenizer.py

The text is the world's pretraining text (`warm_mini.world.world_text` of generated documents), or,
with --synthetic or if the world module does not offer it, random sentences from 3,000 random words.
The world's vocabulary is small, so training on it may stop before the requested vocabulary size
(no pair left that occurs twice); the synthetic text times a full-size vocabulary.

The textbook trainer recounts every pair of every chunk of the whole text after each merge, so it is
timed on a smaller text and vocabulary; both trainers use the same rules, so they must agree there.
"""

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

import regex

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from warm_mini.tokenizer import SPECIALS, SPLIT_PATTERN, merge_pair, train_bpe  # noqa: E402

TARGET_S = 10.0


def corpus(n_chars: int, synthetic: bool) -> tuple[str, str]:
    """(text of about n_chars characters, where it came from)."""
    try:
        from warm_mini.world import generate_documents, world_text
    except ImportError:
        synthetic = True
    if synthetic:
        rng = random.Random(0)
        words = ["".join(rng.choice("etaoinshrdlucmfwyp") for _ in range(rng.randint(1, 9))) for _ in range(3000)]
        parts, size = [], 0
        while size < n_chars:
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 16))).capitalize()
            sentence += f" {rng.randint(0, 9999)}. " if rng.random() < 0.2 else ". "
            parts.append(sentence)
            size += len(sentence)
        return "".join(parts)[:n_chars], "synthetic sentences"
    docs = generate_documents(n_chars // 400 + 1, seed=0)  # a document and its summary: ~550 chars
    return world_text(docs)[:n_chars], "warm_mini.world.world_text"


def textbook_train(text: str, vocab_size: int) -> dict[bytes, int]:
    """The textbook BPE trainer: after each merge, count all pairs of the whole text again.

    Same rules as `train_bpe` (chunks, specials cut out, ties to the smallest ids, early stop, no
    duplicate bytes), so it must return the same ranks, only much slower."""
    pieces = regex.split("|".join(regex.escape(s) for s in SPECIALS), text)
    chunks = [list(c.encode("utf-8")) for piece in pieces for c in regex.findall(SPLIT_PATTERN, piece)]
    token_bytes = [bytes([i]) for i in range(256)]
    ranks = {t: i for i, t in enumerate(token_bytes)}
    while len(ranks) < vocab_size - len(SPECIALS):
        counts = Counter(pair for ids in chunks for pair in zip(ids, ids[1:]))
        if not counts:
            break
        pair, n = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if n < 2:
            break
        merged = token_bytes[pair[0]] + token_bytes[pair[1]]
        if merged not in ranks:
            ranks[merged] = len(token_bytes)
            token_bytes.append(merged)
        chunks = [merge_pair(ids, pair, ranks[merged]) for ids in chunks]
    return ranks


def timed(train, text: str, vocab_size: int) -> tuple[dict[bytes, int], float]:
    start = time.perf_counter()
    ranks = train(text, vocab_size)
    return ranks, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=2_000_000, help="characters of text for the full-size run")
    parser.add_argument("--vocab", type=int, default=4096, help="vocabulary size (specials included) of the full-size run")
    parser.add_argument("--small-chars", type=int, default=100_000, help="characters of text for the side-by-side run")
    parser.add_argument("--small-vocab", type=int, default=1024, help="vocabulary size of the side-by-side run")
    parser.add_argument("--synthetic", action="store_true", help="use synthetic sentences, not the world's text")
    args = parser.parse_args()

    small, source = corpus(args.small_chars, args.synthetic)
    print(f"text: {source}")
    ours, t_ours = timed(train_bpe, small, args.small_vocab)
    textbook, t_textbook = timed(textbook_train, small, args.small_vocab)
    assert ours == textbook, "the two trainers disagree"
    print(f"{len(small):,} chars, {len(ours):,} ranks: ours {t_ours:.2f} s, textbook {t_textbook:.2f} s, "
          f"{t_textbook / t_ours:.0f}x faster (same ranks)")

    full, _ = corpus(args.chars, args.synthetic)
    ranks, t_full = timed(train_bpe, full, args.vocab)
    verdict = "within" if t_full <= TARGET_S else "OVER"
    stopped = ", stopped early: no pair left twice" if len(ranks) < args.vocab - len(SPECIALS) else ""
    print(f"{len(full):,} chars, {len(ranks):,} ranks{stopped}: ours {t_full:.2f} s ({verdict} the {TARGET_S:.0f} s target)")


if __name__ == "__main__":
    main()
