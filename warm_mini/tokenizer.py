"""Our own byte-level BPE tokenizer: trained here, then run by tiktoken.

Training (`train_bpe`) is plain Python; encoding and decoding are handed to a `tiktoken.Encoding`,
which is fast and handles special tokens. Nothing is ever downloaded: we build the Encoding from our
own ranks and never call `tiktoken.get_encoding`.

The vocabulary is, in id order: the 256 single bytes (id = byte value), then one token per merge in
the order training made them, then the special tokens EOT, SEP and PAD.
"""

import base64
import hashlib
import heapq
from collections import Counter, defaultdict
from pathlib import Path

import regex
import tiktoken

from warm_mini import checkpoint
from warm_mini.world import EOT, SEP

PAD = "<|pad|>"  # fills batches of unequal length; never a training target
SPECIALS = (EOT, SEP, PAD)

# Text is first cut into chunks, and merges never cross a chunk boundary, so a token never spans e.g.
# a word and the punctuation after it. Alternatives, tried left to right:
#   English contractions ('s, 't, 're, ...) on their own, so "don't" shares "don" with "don";
#   a run of letters, with at most one leading space (" summary" is one chunk: spaces attach forward);
#   up to 3 digits, so numbers split into short pieces instead of thousands of rare tokens;
#   a run of other symbols (punctuation), again with an optional leading space;
#   whitespace not followed by a non-space, i.e. all but the last space of a run (the last one joins
#   the next word), or trailing whitespace at the end of the text.
SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}{1,3}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each occurrence of `pair` in `ids`, scanning left to right, by `new_id`."""
    a, b = pair
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe(text: str, vocab_size: int) -> dict[bytes, int]:
    """Learn mergeable ranks {token bytes: rank} from `text`, in the format tiktoken expects.

    `vocab_size` counts the special tokens too, so training makes `vocab_size - 256 - len(SPECIALS)`
    merges. It stops early, returning fewer ranks, once no pair of adjacent tokens occurs twice:
    merging a pair seen once would only memorize the training text. Special strings in `text` (e.g.
    from `document + SEP + summary + EOT`) are skipped: they get their own ids, not merges.

    Each step merges the most frequent adjacent pair; ties go to the pair of smallest ids (the older
    tokens), so the result depends on nothing but `text` and `vocab_size`.
    """
    n_merges = vocab_size - 256 - len(SPECIALS)
    if n_merges < 0:
        raise ValueError(f"vocab_size must be at least {256 + len(SPECIALS)}, got {vocab_size}")

    # A text repeats the same few thousand words, so we work on each distinct chunk once, weighted
    # by how often it occurs, instead of on the whole text. Special strings are cut out first, as
    # `encode_with_specials` does, so "<|sep|>" in the text spends no merges.
    pieces = regex.split("|".join(regex.escape(s) for s in SPECIALS), text)
    chunk_counts = Counter(chunk for piece in pieces for chunk in regex.findall(SPLIT_PATTERN, piece))
    chunks = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    weights = list(chunk_counts.values())

    pair_counts: dict[tuple[int, int], int] = defaultdict(int)  # occurrences in the whole text
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # chunks the pair may occur in
    for c, (ids, w) in enumerate(zip(chunks, weights)):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] += w
            where[pair].add(c)

    # A max-heap of (-count, pair). Counts change after every merge; rather than updating entries in
    # place we push the new count and skip popped entries whose count is out of date.
    heap = [(-n, pair) for pair, n in pair_counts.items()]
    heapq.heapify(heap)

    token_bytes = [bytes([i]) for i in range(256)]  # id -> bytes; the id is also the rank
    ranks = {t: i for i, t in enumerate(token_bytes)}
    merges_done = 0
    while merges_done < n_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair) != -neg_count:
            continue  # stale entry
        if -neg_count < 2:
            break
        merged = token_bytes[pair[0]] + token_bytes[pair[1]]
        # tiktoken merges adjacent parts whenever their concatenated bytes have a rank, so there must
        # be one rank per byte string. If a second pair ever spelled the bytes of an existing token
        # ("a"+"bc" after "ab"+"c"; we never saw it in random tests, but have no proof it can't
        # happen), we merge it into that token and add no rank.
        new_id = ranks.get(merged)
        if new_id is None:
            new_id = len(token_bytes)
            token_bytes.append(merged)
            ranks[merged] = new_id
            merges_done += 1

        # Only the chunks that contain the pair change; re-count their pairs and push the changes.
        delta: dict[tuple[int, int], int] = defaultdict(int)
        for c in where.pop(pair):
            ids = chunks[c]
            new_ids = merge_pair(ids, pair, new_id)
            if len(new_ids) == len(ids):
                continue  # the pair left this chunk in an earlier merge
            w = weights[c]
            for p in zip(ids, ids[1:]):
                delta[p] -= w
            for p in zip(new_ids, new_ids[1:]):
                delta[p] += w
                where[p].add(c)
            chunks[c] = new_ids
        for p, d in delta.items():
            if d:
                pair_counts[p] += d
                heapq.heappush(heap, (-pair_counts[p], p))
    return ranks


def build_encoding(ranks: dict[bytes, int], name: str = "warm-mini") -> tiktoken.Encoding:
    """A tiktoken Encoding from our ranks, with EOT, SEP, PAD given the ids right after them."""
    specials = {s: len(ranks) + i for i, s in enumerate(SPECIALS)}
    return tiktoken.Encoding(
        name,
        pat_str=SPLIT_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=specials,
        explicit_n_vocab=len(ranks) + len(specials),  # tiktoken checks the ids are exactly 0..n-1
    )


def checksum_path(path: str | Path) -> Path:
    """Where the SHA-256 of a tokenizer file is kept (tiktoken's format has no room for it)."""
    return Path(f"{path}.sha256")


def save(ranks: dict[bytes, int], path: str | Path) -> None:
    """Write ranks in tiktoken's text format: one `base64(token bytes) rank` line per token, and its SHA-256
    beside it. Both writes are atomic, the checksum first: a kill between them leaves no tokenizer file.

    The special tokens are not stored: they are fixed by this module and `load` appends them.
    """
    lines = [f"{base64.b64encode(t).decode('ascii')} {r}\n" for t, r in sorted(ranks.items(), key=lambda kv: kv[1])]
    data = "".join(lines).encode("ascii")
    checkpoint.atomic_write_text(checksum_path(path), hashlib.sha256(data).hexdigest() + "\n")
    checkpoint.atomic_write_bytes(Path(path), data)


def load(path: str | Path) -> tiktoken.Encoding:
    """Read a file written by `save`, check it against its SHA-256, and rebuild the Encoding.

    We parse the file ourselves: `tiktoken.load.load_tiktoken_bpe` would also copy a local file into
    tiktoken's cache directory.
    """
    data, sums = Path(path).read_bytes(), checksum_path(path)
    if not sums.exists() or hashlib.sha256(data).hexdigest() != sums.read_text().strip():
        raise checkpoint.DamagedFile(path, f"it does not match its checksum {sums.name} (cut short or corrupted)")
    ranks = {}
    for line in data.decode("ascii").splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    return build_encoding(ranks)


def train_tokenizer(text: str, vocab_size: int, path: str | Path) -> tiktoken.Encoding:
    """Train on `text`, save the ranks to `path`, and return the Encoding."""
    ranks = train_bpe(text, vocab_size)
    save(ranks, path)
    return build_encoding(ranks)


def special_ids(enc: tiktoken.Encoding) -> tuple[int, int, int]:
    """The ids of (EOT, SEP, PAD)."""
    return tuple(enc.encode_single_token(s) for s in SPECIALS)


# Every text is encoded with a space in front (SentencePiece's "dummy prefix"), so that a word is the same
# token wherever it stands: " Walter" is one token, while "Walter" at the start of a summary was three
# ("W", "al", "ter") that the document's " Walter" never matched. Decoding removes the space again.
PREFIX = " "
_SPECIAL = regex.compile("(" + "|".join(regex.escape(s) for s in SPECIALS) + ")")


def encode(enc: tiktoken.Encoding, text: str) -> list[int]:
    """Encode plain text, after PREFIX: a literal "<|endoftext|>" in it is spelled out in ordinary tokens,
    so text can never inject a special token."""
    return enc.encode_ordinary(PREFIX + text)


def encode_with_specials(enc: tiktoken.Encoding, text: str) -> list[int]:
    """Encode text we assembled ourselves (e.g. document + SEP + summary + EOT): our special strings
    become their special ids, and each text between them is encoded as `encode` does."""
    pieces = _SPECIAL.split(text)  # odd positions hold the special strings
    return [i for k, piece in enumerate(pieces) if piece
            for i in ([enc.encode_single_token(piece)] if k % 2 else encode(enc, piece))]


def decode(enc: tiktoken.Encoding, ids: list[int]) -> str:
    """The text of `ids`, with PREFIX removed from each text between special tokens:
    decode(encode_with_specials(text)) == text."""
    specials, out, start = set(special_ids(enc)), [], 0
    for end in [i for i, t in enumerate(ids) if t in specials] + [len(ids)]:
        out.append(enc.decode(ids[start:end]).removeprefix(PREFIX))
        out.append(enc.decode(ids[end : end + 1]))
        start = end + 1
    return "".join(out)
