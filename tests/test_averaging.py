"""Tests of WARM (weight averaging), interpolation, the greedy soup and ENS, on tiny GPT reward models (seconds).

Exactness: averaging runs in float32, so a result is bitwise equal to a reference only when both round the same
way (weights 1 and 0, halves, (2, 2) against (1, 1), the same inputs in the same order). Elsewhere the tests use
a tolerance of a few float32 ulps, and say why.
"""

import dataclasses
import weakref

import pytest
import torch
import torch.nn as nn

from warm_mini import averaging, checkpoint
from warm_mini.averaging import Ensemble, MergeError, greedy_soup, interpolate, merge
from warm_mini.config import ModelConfig
from warm_mini.model import GPT

CONFIG = ModelConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16)
ULPS = dict(rtol=1e-6, atol=1e-7)  # a few float32 roundings of values of order 1


class TinyRM(nn.Module):
    """A reward model as the pipeline builds one: GPT backbone, scalar head on the last token, two buffers."""

    def __init__(self, seed: int, config: ModelConfig = CONFIG):
        super().__init__()
        torch.manual_seed(seed)
        self.backbone = GPT(config)
        self.head = nn.Linear(config.n_embd, 1)
        self.register_buffer("scale", torch.rand(()) + 0.5)  # a float buffer: averaged
        self.register_buffer("updates", torch.tensor(7))  # an integer buffer: must agree, copied

    def forward(self, idx, attention_mask=None):
        h = self.backbone.hidden_states(idx, attention_mask)[:, -1]  # (B, C)
        return self.head(h).squeeze(-1) * self.scale  # (B,)


def ckpt(seed: int, config: ModelConfig = CONFIG) -> dict:
    model = TinyRM(seed, config)
    return {"model": model.state_dict(), "model_config": dataclasses.asdict(config), "tokenizer": "tok-hash",
            "step": 100, "val_acc": 0.6 + seed / 100}


def scored(merged: dict, idx) -> torch.Tensor:
    model = TinyRM(0)
    model.load_state_dict(merged["model"])
    with torch.no_grad():
        return model.eval()(idx)


def assert_states_equal(a: dict, b: dict, **tol):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        if tol:
            torch.testing.assert_close(a[key], b[key], **tol, msg=key)
        else:
            assert torch.equal(a[key], b[key]), key


IDX = torch.randint(0, CONFIG.vocab_size, (4, 10), generator=torch.Generator().manual_seed(0))


def test_streaming_merge_equals_the_equation_on_every_tensor():
    # Three different models, non-uniform weights: a merge that returned one input, or mixed up the weights,
    # differs from the plain equation on every float tensor by far more than float32 rounding.
    cks, weights = [ckpt(0), ckpt(1), ckpt(2)], [0.5, 0.3, 0.2]
    for seed, c in enumerate(cks):  # as after fine-tuning: biases and LayerNorms move away from their shared init too
        torch.manual_seed(seed)
        for t in c["model"].values():
            if t.is_floating_point():
                t.add_(0.1 * torch.randn_like(t))
    expected = averaging.reference_merge([c["model"] for c in cks], weights)
    merged = merge(cks, weights)["model"]
    assert_states_equal(merged, expected, **ULPS)
    for key, t in expected.items():
        if t.is_floating_point():
            assert not any(torch.allclose(t, c["model"][key]) for c in cks), key


def test_identical_models_average_to_themselves():
    # Three copies: 3x then /3 rounds twice in float32, so equal to a few ulps, not bitwise.
    a = ckpt(0)
    assert_states_equal(merge([a, a, a])["model"], a["model"], **ULPS)
    # Two copies: x + x and /2 are exact.
    assert_states_equal(merge([a, a])["model"], a["model"])


def test_order_does_not_matter():
    a, b, c = ckpt(0), ckpt(1), ckpt(2)
    # Float addition is not associative: another order may round differently, by an ulp.
    assert_states_equal(merge([a, b, c])["model"], merge([c, a, b])["model"], **ULPS)
    assert_states_equal(merge([a, b, c], [1, 2, 3])["model"], merge([c, a, b], [3, 1, 2])["model"], **ULPS)
    with pytest.raises(AssertionError):  # the weights do follow their checkpoints
        assert_states_equal(merge([a, b, c], [1, 2, 3])["model"], merge([c, a, b], [1, 2, 3])["model"], **ULPS)


def test_weights_one_zero_and_normalisation():
    a, b = ckpt(0), ckpt(1)
    assert_states_equal(merge([a, b], [1, 0])["model"], a["model"])
    assert_states_equal(merge([a, b], [2, 2])["model"], merge([a, b], [1, 1])["model"])
    merged = merge([a, b], [3, 1])
    assert merged["merge_weights"] == [0.75, 0.25]
    torch.testing.assert_close(merged["model"]["head.weight"], 0.75 * a["model"]["head.weight"] + 0.25 * b["model"]["head.weight"])


@pytest.mark.parametrize("weights", [[1, -1], [0, 0], [1], [1, float("nan")]])
def test_bad_weights_are_refused(weights):
    with pytest.raises(ValueError, match="weights"):
        merge([ckpt(0), ckpt(1)], weights)


def test_interpolation_endpoints_and_midpoint():
    a, b = ckpt(0), ckpt(1)
    assert_states_equal(interpolate(a, b, 0.0)["model"], a["model"])
    assert_states_equal(interpolate(a, b, 1.0)["model"], b["model"])
    mid = interpolate(a, b, 0.5)["model"]
    for key, t in a["model"].items():  # halving is exact, so 0.5a + 0.5b rounds exactly like (a + b) / 2
        expected = (t + b["model"][key]) / 2 if t.is_floating_point() else t
        assert torch.equal(mid[key], expected), key
    with pytest.raises(ValueError, match="lam"):
        interpolate(a, b, 1.5)


def test_weight_average_of_linear_heads_equals_ensemble():
    # On fixed features a linear head's reward is linear in its weights: WA == ENS up to float rounding.
    heads = [nn.Linear(16, 1) for _ in range(3)]
    features = torch.randn(8, 16)
    merged = nn.Linear(16, 1)
    merged.load_state_dict(merge([{"model": h.state_dict()} for h in heads])["model"])
    with torch.no_grad():
        torch.testing.assert_close(merged(features), sum(h(features) for h in heads) / 3, rtol=1e-5, atol=1e-6)


def test_weight_average_differs_from_ensemble_through_a_nonlinear_backbone():
    models = [TinyRM(seed).eval() for seed in (0, 1)]
    with torch.no_grad():
        ens = Ensemble(models)(IDX)
    wa = scored(merge([{"model": m.state_dict()} for m in models]), IDX)
    assert (wa - ens).abs().max() > 1e-2 * ens.abs().max()


def test_buffers():
    a, b = ckpt(0), ckpt(1)
    merged = merge([a, b])["model"]
    assert torch.equal(merged["scale"], (a["model"]["scale"] + b["model"]["scale"]) / 2)  # float: averaged
    assert merged["updates"].dtype == torch.int64 and merged["updates"].item() == 7  # integer: copied
    b["model"]["updates"] = torch.tensor(8)
    with pytest.raises(MergeError, match="'updates'"):
        merge([a, b])


def test_tied_weights_stay_tied():
    merged = merge([ckpt(0), ckpt(1)])["model"]
    assert merged["backbone.lm_head.weight"] is merged["backbone.tok_emb.weight"]


def test_low_precision_is_summed_in_float32():
    states = [{k: t.bfloat16() if t.is_floating_point() else t for k, t in ckpt(s)["model"].items()} for s in range(3)]
    merged = merge([{"model": s} for s in states])["model"]
    for key, t in merged.items():
        if t.is_floating_point():
            assert t.dtype == torch.bfloat16
            expected = (sum(s[key].float() for s in states) / 3).bfloat16()  # one rounding to bf16, at the end
            assert torch.equal(t, expected), key


def _other_layers(c):
    return ckpt(1, dataclasses.replace(CONFIG, n_layer=2))  # its tensor names differ too: config comes first


def _other_tokenizer(c):
    c["tokenizer"] = "another-hash"


def _missing_key(c):
    del c["model"]["head.bias"]


def _other_shape(c):
    c["model"]["head.weight"] = torch.zeros(2, 16)


def _other_dtype(c):
    c["model"]["head.weight"] = c["model"]["head.weight"].double()


@pytest.mark.parametrize("spoil, message", [
    (_other_layers, "model_config.n_layer is 2"),
    (_other_tokenizer, "tokenizer 'another-hash'"),
    (_missing_key, "no tensor 'head.bias'"),
    (_other_shape, r"'head.weight' has shape \(2, 16\)"),
    (_other_dtype, "'head.weight' has dtype torch.float64"),
])
def test_mismatch_names_the_first_difference(spoil, message):
    other = ckpt(1)
    other = spoil(other) or other
    with pytest.raises(MergeError, match=message):
        merge([ckpt(0), other])


def test_merged_checkpoint_round_trips_through_disk(tmp_path):
    merged = merge([ckpt(0), ckpt(1), ckpt(2)])
    checkpoint.save(merged, tmp_path / "warm.pt")
    loaded = checkpoint.load(tmp_path / "warm.pt")
    assert torch.equal(scored(loaded, IDX), scored(merged, IDX))
    assert loaded["merged_from"] == ["input 0", "input 1", "input 2"]
    # kept: what every input agrees on; dropped: what describes one member only
    assert loaded["model_config"] == dataclasses.asdict(CONFIG) and loaded["tokenizer"] == "tok-hash"
    assert loaded["step"] == 100 and "val_acc" not in loaded


def _on_disk(tmp_path, n):
    paths = [tmp_path / f"rm{i}.pt" for i in range(n)]
    for i, p in enumerate(paths):
        checkpoint.save(ckpt(i), p)
    return paths


def test_merge_from_paths_equals_merge_in_memory(tmp_path):
    paths = _on_disk(tmp_path, 3)
    from_disk = merge(paths, [1, 2, 3])
    assert_states_equal(from_disk["model"], merge([ckpt(i) for i in range(3)], [1, 2, 3])["model"])
    assert from_disk["merged_from"] == [p.name for p in paths]  # names alone: a moved run merges to the same bytes


@pytest.mark.parametrize("run", [merge, lambda paths: greedy_soup(paths, lambda c: 0.0)], ids=["merge", "greedy_soup"])
def test_one_checkpoint_in_memory_at_a_time(tmp_path, monkeypatch, run):
    """Every tensor of every loaded checkpoint is watched: when the next one is loaded, none of the earlier
    ones may be alive. Loading all first, or keeping the previous checkpoint in a variable, fails this."""
    real_load = checkpoint.load
    loaded = []  # per load, weak references to its tensors
    most_alive = 0

    def watched_load(path):
        nonlocal most_alive
        most_alive = max(most_alive, sum(any(r() is not None for r in refs) for refs in loaded))
        ckpt = real_load(path)
        loaded.append([weakref.ref(t) for t in ckpt["model"].values()])
        return ckpt

    monkeypatch.setattr(averaging.checkpoint, "load", watched_load)
    run(_on_disk(tmp_path, 4))
    assert len(loaded) == 4 and most_alive == 0


def _one_hot(i, n=5):
    return {"model": {"w": torch.eye(n)[i]}}


def test_greedy_soup_keeps_what_helps():
    # The uniform average of one-hot vectors shows which ones it holds, so evaluate can score subsets.
    scores = {(0,): 0.5, (0, 1): 0.6, (0, 1, 2): 0.55, (0, 1, 3): 0.6, (0, 1, 4): 0.7}  # 3 ties: not added
    asked = []

    def evaluate(candidate):
        subset = tuple(candidate["model"]["w"].nonzero().flatten().tolist())
        asked.append(subset)
        return scores.get(subset, 0.0)

    soup, kept = greedy_soup([_one_hot(i) for i in range(5)], evaluate)
    assert kept == [0, 1, 4]
    assert asked == [(0,), (0, 1), (0, 1, 2), (0, 1, 3), (0, 1, 4)]  # starts from the first alone
    assert torch.equal(soup["model"]["w"], torch.tensor([1, 1, 0, 0, 1]) / 3)
    assert soup["merged_from"] == ["input 0", "input 1", "input 4"]


class Fixed(nn.Module):
    def __init__(self, rewards):
        super().__init__()
        self.rewards = torch.tensor(rewards)

    def forward(self, idx, attention_mask=None):
        return self.rewards


def test_ensemble_is_the_mean_of_its_members():
    members = [Fixed([1.0, 2.0, 4.0]), Fixed([3.0, 2.0, 1.0])]
    assert torch.equal(Ensemble(members)(IDX), torch.tensor([2.0, 2.0, 2.5]))


def test_ensemble_of_reward_models_is_the_mean_of_their_rewards():
    models = [TinyRM(seed).eval() for seed in (0, 1, 2)]
    with torch.no_grad():
        torch.testing.assert_close(Ensemble(models)(IDX), sum(m(IDX) for m in models) / 3)


def test_ensemble_normaliser_is_applied_after_the_mean():
    ens = Ensemble([Fixed([1.0, 2.0, 4.0]), Fixed([3.0, 2.0, 1.0])])
    ens.reward_mean.fill_(1.0)
    ens.reward_std.fill_(0.5)
    assert torch.equal(ens(IDX), torch.tensor([2.0, 2.0, 3.0]))  # ([2, 2, 2.5] - 1) / 0.5
