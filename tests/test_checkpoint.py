"""Run files: atomic writes, and every damaged checkpoint or tokenizer refused with one line naming the file."""

import os

import pytest
import torch

from warm_mini import checkpoint, world
from warm_mini import tokenizer as tok


class Payload:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "rm_0.pt"
    checkpoint.save({"model": {"w": torch.randn(4096)}, "step": 3}, path)
    return path


def test_a_good_checkpoint_loads(saved):
    assert checkpoint.load(saved)["step"] == 3


def test_a_truncated_checkpoint_is_refused(saved):
    saved.write_bytes(saved.read_bytes()[:1000])
    with pytest.raises(checkpoint.DamagedFile, match=r"rm_0.pt: not a complete checkpoint.*delete it and rerun"):
        checkpoint.load(saved)


def test_one_value_is_read_without_the_tensors_and_a_cut_file_is_refused(saved):
    assert checkpoint.read_value(saved, "step") == 3
    saved.write_bytes(saved.read_bytes()[:1000])
    with pytest.raises(checkpoint.DamagedFile, match=r"rm_0.pt: unreadable"):
        checkpoint.read_value(saved, "step")


def test_flipped_bytes_fail_the_checksum(saved):
    data = bytearray(saved.read_bytes())
    middle = len(data) // 2  # inside the tensor's bytes, where torch.load alone would not notice
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    saved.write_bytes(bytes(data))
    with pytest.raises(checkpoint.DamagedFile, match="fails its CRC-32 check"):
        checkpoint.load(saved)


def test_a_pickle_payload_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "rm_0.pt"
    torch.save({"model": Payload(marker)}, path)
    with pytest.raises(checkpoint.DamagedFile, match="objects other than tensors"):
        checkpoint.load(path)
    assert not marker.exists()


def test_an_atomic_write_clears_what_a_killed_write_left(tmp_path):
    stale = tmp_path / ".state.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    checkpoint.save({"step": 1}, tmp_path / "state.pt")
    assert not stale.exists() and [p.name for p in tmp_path.iterdir()] == ["state.pt"]


@pytest.fixture
def tokenizer_file(tmp_path):
    path = tmp_path / "tokenizer.tiktoken"
    tok.save(tok.train_bpe(world.world_text(world.generate_documents(20, seed=0)), 300), path)
    return path


def test_a_tokenizer_is_saved_with_its_checksum(tokenizer_file):
    assert tok.checksum_path(tokenizer_file).exists()
    assert tok.load(tokenizer_file).n_vocab == 300


@pytest.mark.parametrize("damage", ["cut at a line", "cut mid-line", "flipped byte", "no checksum"])
def test_a_damaged_tokenizer_is_refused(tokenizer_file, damage):
    data = tokenizer_file.read_bytes()
    if damage == "cut at a line":  # the case that once loaded silently, with fewer tokens
        tokenizer_file.write_bytes(data[: data.rindex(b"\n", 0, len(data) // 2) + 1])
    elif damage == "cut mid-line":
        tokenizer_file.write_bytes(data[: len(data) // 2])
    elif damage == "flipped byte":
        tokenizer_file.write_bytes(data[:10] + bytes([data[10] ^ 1]) + data[11:])
    else:
        tok.checksum_path(tokenizer_file).unlink()
    with pytest.raises(checkpoint.DamagedFile, match=r"tokenizer.tiktoken: it does not match its checksum"):
        tok.load(tokenizer_file)
