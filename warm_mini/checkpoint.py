"""Files that survive a kill: atomic saves, checked loads, JSON-lines logs; and RunError, the failures a user can fix.

Where each stage puts its files in a run directory is the pipeline's business (warm_pipeline/).
"""

import io
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch


class RunError(Exception):
    """An expected failure (a diverged run, a damaged file, checkpoints that cannot be merged): the scripts
    report it as one line, with what to do, instead of a traceback."""


class DamagedFile(RunError):
    """A run file that is cut short, corrupted, or holds more than tensors and plain values."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}; delete it and rerun the stage that wrote it")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file, fsync, then rename: a kill at any moment leaves either the old file or the new.
    Temporary files a killed earlier write of the same path left behind are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save(obj: dict, path: Path) -> None:
    """Save a plain dict of tensors and simple values atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint, refusing a damaged one with DamagedFile.

    A checkpoint is a zip archive whose records carry CRC-32 checksums (torch.save writes them, torch.load
    does not read them): they are verified first, so flipped bytes are caught. Then torch.load with
    weights_only=True rebuilds tensors and plain values only, and never runs code from a pickle payload.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError):
        raise DamagedFile(path, "not a complete checkpoint (cut short?)") from None
    if bad is not None:
        raise DamagedFile(path, f"its record {bad} fails its CRC-32 check (corrupted bytes)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise DamagedFile(path, "it holds objects other than tensors and plain values (refused, nothing was run)") from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise DamagedFile(path, f"unreadable ({str(e).splitlines()[0][:120]})") from None


def read_value(path: Path, key: str):
    """One plain value of a checkpoint, without reading its tensors (memory-mapped; checksums not verified)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)[key]
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError) as e:
        raise DamagedFile(path, f"unreadable ({str(e).splitlines()[0][:120]})") from None


def append_jsonl(path: Path, record: dict) -> None:
    """Append one metrics record as a JSON line (the metrics/*.jsonl logs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines log ([] if it does not exist); a last line cut short by a kill is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines[:-1]]
    try:
        records += [json.loads(line) for line in lines[-1:]]
    except json.JSONDecodeError:
        pass
    return records


def truncate_jsonl(path: Path, key: str, last: int) -> None:
    """Keep the records whose `key` is at most `last`: a resumed run drops what it logged after its checkpoint,
    and logs it again, so every step appears once."""
    if Path(path).exists():
        kept = [r for r in read_jsonl(path) if r[key] <= last]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
