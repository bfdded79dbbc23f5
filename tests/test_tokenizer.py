"""Tests of our byte-level BPE (warm_mini/tokenizer.py) and of its tiktoken wrapping."""

import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import regex
import tiktoken.load

from warm_mini.tokenizer import (
    PAD,
    SPECIALS,
    SPLIT_PATTERN,
    build_encoding,
    decode,
    encode,
    encode_with_specials,
    load,
    save,
    special_ids,
    train_bpe,
    train_tokenizer,
)
from warm_mini.world import EOT, SEP

VOCAB = 512
REPO = Path(__file__).resolve().parent.parent


def synthetic_corpus(n_chars: int, seed: int = 0) -> str:
    """News-like sentences from small word lists, with numbers, punctuation and some non-ASCII words.

    Self-contained on purpose: the tests must not depend on the world generator."""
    rng = random.Random(seed)
    subjects = ["the council", "a spokesperson", "the mayor", "residents", "the company", "Zoë Müller", "the café owner"]
    verbs = ["announced", "rejected", "approved", "discussed", "won't accept", "reported", "they're planning"]
    objects = ["a new budget", "the bridge repairs", "higher taxes", "the festival", "a merger", "東京 office plans"]
    places = ["in Springfield", "near the river", "in São Paulo", "downtown", "at the town hall", "in Zürich"]
    parts, size = [], 0
    while size < n_chars:
        sentence = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(places)}"
        if rng.random() < 0.3:
            sentence += f" on {rng.randint(1, 28)} May {rng.randint(1990, 2030)}, costing ${rng.randint(1, 99_999)}"
        sentence = sentence[0].upper() + sentence[1:] + rng.choice([". ", "! ", "? ", ".\n\n", " 🎉. "])
        parts.append(sentence)
        size += len(sentence)
    return "".join(parts)


@pytest.fixture(scope="module")
def corpus() -> str:
    return synthetic_corpus(100_000)


@pytest.fixture(scope="module")
def ranks(corpus) -> dict[bytes, int]:
    return train_bpe(corpus, VOCAB)


@pytest.fixture(scope="module")
def enc(ranks):
    return build_encoding(ranks)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The mayor approved it.",
        "   leading, trailing and    inner   spaces   ",
        "lines\n\nand\r\nwindows\tand\ttabs\n\n\n",
        "Crème brûlée, naïve façade, Ærøskøbing",
        "東京は日本の首都です。",
        "emoji 🎉👍🏽 and a family 👨‍👩‍👧 (zero-width joiners)",
        "numbers 1234567890, 3.14159 and -42",
        "it's, they're, we'VE, I'll",
    ],
)
def test_round_trip(enc, text):
    assert decode(enc, encode(enc, text)) == text


def test_round_trip_of_the_training_text(enc, corpus):
    assert decode(enc, encode(enc, corpus)) == corpus


def test_a_word_is_one_token_at_the_start_of_a_text_as_inside_it(enc):
    word = encode(enc, "summary")
    assert enc.decode(word) == " summary"  # the prefix
    ids = encode_with_specials(enc, f"summary{SEP}summary summary{EOT}")
    assert ids == word + [special_ids(enc)[1]] + word + word + [special_ids(enc)[0]]


def test_decode_bytes_is_the_concatenation_of_token_bytes(enc, ranks):
    token_bytes = {rank: t for t, rank in ranks.items()}
    token_bytes.update({i: s.encode() for s, i in zip(SPECIALS, special_ids(enc))})
    rng = random.Random(0)
    for _ in range(100):
        ids = [rng.randrange(enc.n_vocab) for _ in range(rng.randint(0, 20))]
        assert enc.decode_bytes(ids) == b"".join(token_bytes[i] for i in ids)


def test_tokens_can_split_a_multibyte_character(enc):
    e_acute = list("é".encode())  # two bytes, and each single byte is a token
    assert enc.decode_bytes(e_acute[:1]) == b"\xc3"  # half a character: not valid UTF-8
    assert enc.decode(e_acute[:1], errors="replace") == "\ufffd"
    assert enc.decode(e_acute) == "é"
    emoji_ids = encode(enc, "🎉")
    assert enc.decode_bytes(emoji_ids) == " 🎉".encode()


def test_plain_text_never_produces_special_tokens(enc):
    text = f"a document{SEP}its summary{EOT}{PAD} and more"
    ids = encode(enc, text)
    assert not set(ids) & set(special_ids(enc))
    assert decode(enc, ids) == text  # the special strings are spelled out in ordinary tokens
    with pytest.raises(ValueError):
        enc.encode(text)  # tiktoken's default refuses text containing a special string


def test_special_tokens_when_allowed(enc, ranks):
    eot, sep, pad = special_ids(enc)
    assert (eot, sep, pad) == (len(ranks), len(ranks) + 1, len(ranks) + 2)
    ids = encode_with_specials(enc, f"a document{SEP}its summary{EOT}{PAD}")
    assert ids[-2:] == [eot, pad]
    assert [i for i in ids if i in (eot, sep, pad)] == [sep, eot, pad]
    assert decode(enc, ids) == f"a document{SEP}its summary{EOT}{PAD}"


def test_vocab_size_and_compression(enc, ranks, corpus):
    assert len(ranks) == VOCAB - len(SPECIALS)
    assert enc.n_vocab == VOCAB
    assert sorted(ranks.values()) == list(range(len(ranks)))
    assert len(encode(enc, corpus)) / len(corpus) < 0.3  # a byte per char without merges


def test_early_stop_when_no_pair_repeats():
    # "abab" is one chunk: (a, b) occurs twice and is merged; then (ab, ab) occurs once: stop.
    ranks = train_bpe("abab", 1000)
    assert len(ranks) == 257 and ranks[b"ab"] == 256
    assert len(train_bpe("", 1000)) == 256


def test_special_strings_in_the_training_text_spend_no_merges():
    ranks = train_bpe(f"one summary{SEP}another one{EOT}{PAD}" * 50, 1000)
    assert not [t for t in ranks if len(t) > 1 and (b"<" in t or b"|" in t)]


def test_vocab_smaller_than_the_bytes_is_rejected():
    with pytest.raises(ValueError):
        train_bpe("some text", 258)


def test_every_token_joins_two_older_tokens(ranks):
    # tiktoken can only build a token from two adjacent parts that are tokens themselves.
    for t, rank in ranks.items():
        if len(t) > 1:
            assert any(ranks.get(t[:k], rank) < rank and ranks.get(t[k:], rank) < rank for k in range(1, len(t)))


def reference_encode(ranks: dict[bytes, int], text: str) -> list[int]:
    """The textbook BPE encoder: cut text into chunks, then in each chunk apply the merges in rank
    order, each one to all its occurrences, left to right."""
    ids = []
    for chunk in regex.findall(SPLIT_PATTERN, text):
        parts = [bytes([b]) for b in chunk.encode()]
        while True:
            pair_ranks = [ranks.get(a + b) for a, b in zip(parts, parts[1:])]
            best = min((r for r in pair_ranks if r is not None), default=None)
            if best is None:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and ranks.get(parts[i] + parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids += [ranks[p] for p in parts]
    return ids


def test_tiktoken_encodes_like_the_reference_encoder(enc, ranks, corpus):
    unseen = synthetic_corpus(5_000, seed=1) + " Ærøskøbing's 2024 résumé… 👨‍👩‍👧\n\n  x"
    for text in (corpus[:30_000], unseen):
        assert encode(enc, text) == reference_encode(ranks, " " + text)  # encode puts the prefix first


def test_training_is_deterministic_across_hash_seeds(tmp_path, corpus):
    text = corpus[:20_000]
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    save(train_bpe(text, 400), tmp_path / "here.tiktoken")
    assert train_bpe(text, 400) == train_bpe(text, 400)
    script = (
        "import sys; from pathlib import Path; from warm_mini.tokenizer import train_bpe, save; "
        "save(train_bpe(Path(sys.argv[1]).read_text(encoding='utf-8'), 400), sys.argv[2])"
    )
    # a hash seed other than this process's: str and bytes hashes, hence set and dict orders, change
    hash_seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
    out = tmp_path / "there.tiktoken"
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "text.txt"), str(out)], env=env, check=True)
    assert out.read_bytes() == (tmp_path / "here.tiktoken").read_bytes()


def test_save_and_load_offline(tmp_path, monkeypatch, enc, ranks, corpus):
    path = tmp_path / "tok.tiktoken"
    trained = train_tokenizer(corpus, VOCAB, path)

    def no_network(*args, **kwargs):
        raise AssertionError("the tokenizer tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)
    loaded = load(path)
    sample = corpus[:5_000] + f"{SEP}done{EOT}"
    assert encode_with_specials(loaded, sample) == encode_with_specials(enc, sample) == encode_with_specials(trained, sample)
    assert loaded.n_vocab == enc.n_vocab and special_ids(loaded) == special_ids(enc)
    # the file is in tiktoken's own format (TIKTOKEN_CACHE_DIR="" stops tiktoken caching a copy)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    assert tiktoken.load.load_tiktoken_bpe(str(path)) == ranks
