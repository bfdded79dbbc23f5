"""Reward models: head, Bradley-Terry loss, last-token reading, linear probe, normaliser, diversity, batches."""

import dataclasses
import math
import random
from pathlib import Path

import pytest
import torch

from warm_mini import config, data, prefs, world
from warm_mini import tokenizer as tok
from warm_mini.config import ModelConfig
from warm_mini.model import GPT
from warm_mini.reward import (LMC_PAIRS, Centred, Comparisons, RewardModel, accuracy, bradley_terry_loss, comparison_batches, diversity,
                              doc_of_prompt, linear_probe, normalise, pair_accuracy, rm_loss, score_pairs, score_summaries,
                              sft_reward_model, split_rows)

CFG = ModelConfig(vocab_size=300, block_size=64, n_layer=1, n_head=2, n_embd=16)


def test_head_starts_as_the_recipe_says():
    torch.manual_seed(0)
    w = torch.cat([RewardModel(ModelConfig(**{**CFG.__dict__, "n_embd": 64})).head.weight.flatten() for _ in range(50)])
    assert w.std().item() == pytest.approx(1 / math.sqrt(65), rel=0.05)
    assert torch.count_nonzero(RewardModel(CFG).head.bias) == 0


def test_bradley_terry_loss_and_accuracy_by_hand():
    rc, rr = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([1.0, 0.0, 1.0])
    expected = -sum(math.log(1 / (1 + math.exp(-(a - b)))) for a, b in zip(rc.tolist(), rr.tolist())) / 3
    assert bradley_terry_loss(rc, rr).item() == pytest.approx(expected)
    assert accuracy(rc, rr) == pytest.approx(2 / 3)  # a tie counts as correct: 1[r+ >= r-]
    assert pair_accuracy(rc, rr, torch.tensor([True, True, False])) == 1.0  # label False: b preferred


def test_reward_reads_the_last_real_token_whatever_the_padding():
    torch.manual_seed(0)
    rm = RewardModel(CFG).eval()
    rows = [[5, 6, 7, 8, 9], [10, 11]]
    idx, mask = data.left_pad(rows, pad_id=0)
    padded = rm(idx, mask)
    alone = torch.cat([rm(torch.tensor([r])) for r in rows])
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=0)
    changed = idx.clone()
    changed[1, 0] = 299  # a pad token's value never matters
    torch.testing.assert_close(rm(changed, mask), padded)


def test_linear_probe_fits_a_separable_direction():
    """Fixed features whose first channel tells chosen from rejected: the probe must find it."""

    class Fixed(RewardModel):
        def features(self, idx, attention_mask=None, segments=None, ends=None):
            return self.table[idx[:, -1] if segments is None else idx.gather(1, ends)]

    torch.manual_seed(0)
    rm = Fixed(CFG)
    rm.table = torch.randn(CFG.vocab_size, CFG.n_embd)
    rm.table[:100, 0] += 3.0  # tokens 0..99 end chosen summaries
    n = 64
    pairs = prefs.Pairs(doc=[0] * n, a=[[i] for i in range(n)], b=[[100 + i] for i in range(n)], score_a=torch.ones(n),
                        score_b=torch.zeros(n), label=torch.ones(n, dtype=torch.bool), clean=torch.ones(n, dtype=torch.bool),
                        flipped=torch.zeros(n, dtype=torch.bool))
    enc, docs = _fake_enc(), [world.generate_documents(1, 0)[0]]
    batch = comparison_batches(enc, docs, pairs, 1, 1, 0)(0, 0, 0, 1)  # one document: all 64 pairs
    before = rm_loss(rm, batch).item()
    rm.head.load_state_dict(linear_probe(rm, enc, docs, pairs, docs, pairs, steps=200, device="cpu"))
    after = rm_loss(rm, batch).item()
    assert after < 0.1 < before
    assert pair_accuracy(*score_pairs(rm, enc, docs, pairs), pairs.label) == 1.0


def test_normaliser_gives_mean_zero_std_one(tiny_world):
    enc, docs, pairs = tiny_world
    torch.manual_seed(0)
    rm = RewardModel(ModelConfig(vocab_size=enc.n_vocab, block_size=512, n_layer=1, n_head=2, n_embd=16))
    normalise(rm, enc, docs, pairs, "cpu")
    r = torch.cat(score_pairs(rm, enc, docs, pairs))
    assert r.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert r.std().item() == pytest.approx(1.0, abs=1e-4)


def test_comparisons_group_pairs_by_document_and_score_each_summary_once():
    # document 0 has summaries x, y, z and all three pairs (K = 3); document 1 one pair
    x, y, z, u, v = [1], [2, 2], [3], [4], [5]
    pairs = prefs.Pairs(doc=[0, 0, 0, 1], a=[x, x, y, u], b=[y, z, z, v], score_a=torch.zeros(4), score_b=torch.zeros(4),
                        label=torch.tensor([True, False, True, False]), clean=torch.ones(4, dtype=torch.bool),
                        flipped=torch.zeros(4, dtype=torch.bool))
    c = Comparisons.of(pairs.doc, *pairs.chosen_rejected())
    assert c.doc == [0, 1] and c.summaries == [[x, y, z], [v, u]]
    assert (c.chosen, c.rejected) == ([[0, 2, 1], [0]], [[1, 0, 2], [1]])  # chosen: x over y, z over x, y over z; v over u
    assert c.pair == [[0, 1, 2], [3]]


def test_packed_rewards_equal_rewards_scored_one_summary_at_a_time(tiny_world):
    """[document | s_1 | ... | s_K] with each summary masked from the others and its positions restarting after
    the document computes what each [document | s_k] computes alone."""
    enc, docs, _ = tiny_world
    torch.manual_seed(0)
    rm = RewardModel(ModelConfig(vocab_size=enc.n_vocab, block_size=512, n_layer=2, n_head=2, n_embd=16)).eval()
    eot = enc.encode_single_token(world.EOT)
    rng = random.Random(0)
    summaries = [[tok.encode(enc, world.reference_summary(d, rng)) + [eot] for _ in range(rng.randint(2, 4))] for d in docs]
    pairs = prefs.Pairs(doc=[i for i, s in enumerate(summaries) for _ in s[1:]], a=[s[0] for s in summaries for _ in s[1:]],
                        b=[t for s in summaries for t in s[1:]], score_a=torch.zeros(0), score_b=torch.zeros(0),
                        label=torch.ones(sum(len(s) - 1 for s in summaries), dtype=torch.bool), clean=None, flipped=None)
    pair_docs = [docs[i] for i in pairs.doc]
    alone = score_summaries(rm, enc, pair_docs, pairs.a), score_summaries(rm, enc, pair_docs, pairs.b)
    packed = score_pairs(rm, enc, docs, pairs, batch_size=5)  # RewardModel: packed rows, in the pairs' order
    for p, a in zip(packed, alone):
        torch.testing.assert_close(p, a)
    batch = comparison_batches(enc, docs, pairs, len(docs), 1, seed=0)(0, 0, 0, 1)  # the training rows
    r = rm(batch["idx"], segments=batch["segments"], ends=batch["ends"]).flatten()
    torch.testing.assert_close(r[batch["chosen"]], alone[0][batch["pair"]])
    torch.testing.assert_close(r[batch["rejected"]], alone[1][batch["pair"]])


def test_centred_reward_is_the_difference_to_the_reference_and_ignores_document_offsets(tiny_world):
    enc, docs, pairs = tiny_world
    torch.manual_seed(0)
    rm = RewardModel(ModelConfig(vocab_size=enc.n_vocab, block_size=512, n_layer=1, n_head=2, n_embd=16)).eval()
    sep = enc.encode_single_token(world.SEP)

    class Offset(torch.nn.Module):  # rm plus a large offset that depends on the document alone
        def forward(self, idx, attention_mask):
            prompt_lengths = [len(p) for p, _ in split_rows(idx, attention_mask, sep)]
            return rm(idx, attention_mask) + 10.0 * torch.tensor(prompt_lengths, dtype=torch.float)

    prompts = doc_of_prompt(enc, docs)
    centred = Centred(rm, enc, prompts, docs, pairs)
    pair_docs = [docs[i] for i in pairs.doc]
    r = score_summaries(centred, enc, pair_docs, pairs.b)
    by_hand = score_summaries(rm, enc, pair_docs, pairs.b) - score_summaries(rm, enc, pair_docs, pairs.a)  # a: the references
    torch.testing.assert_close(r, by_hand / centred.scale)
    assert torch.cat([r, score_summaries(centred, enc, pair_docs, pairs.a)]).std().item() == pytest.approx(1.0, abs=1e-4)
    offset = Offset()
    assert score_summaries(offset, enc, pair_docs, pairs.b).std() > 10 * score_summaries(rm, enc, pair_docs, pairs.b).std()
    shifted = score_summaries(Centred(offset, enc, prompts, docs, pairs), enc, pair_docs, pairs.b)
    torch.testing.assert_close(shifted, r, atol=2e-3, rtol=0)  # float32 offsets of ~1,000 round at 1e-4


def test_comparison_batches_follow_the_seed(tiny_world):
    enc, docs, pairs = tiny_world
    batch = comparison_batches(enc, docs, pairs, 4, 1, seed=0)(0, 0, 0, 1)
    assert batch["idx"].shape[0] == 4 and batch["chosen"].shape == batch["rejected"].shape == (4,)
    other = comparison_batches(enc, docs, pairs, 4, 1, seed=1)(0, 0, 0, 1)
    assert not torch.equal(batch["idx"], other["idx"])  # another data order
    assert torch.equal(batch["idx"], comparison_batches(enc, docs, pairs, 4, 1, seed=0)(0, 0, 0, 1)["idx"])


def test_the_first_rms_each_change_one_thing_from_rm_0():
    cfg = config.preset("cpu")
    starts = [Path("rm/curriculum") / f"step_{s:06d}.pt" for s in (800, 900, 1000)]
    recipes = [diversity(cfg, i, starts) for i in range(cfg.rm.n_models)]
    for name, (a, b) in LMC_PAIRS.items():
        if a == b:
            continue
        differ = {k for k in ("lr", "dropout", "init") if recipes[a][k] != recipes[b][k]}
        assert differ == {"data order": set(), "learning rate": {"lr"}, "Baklava init": {"init"}}[name], name
    assert len({r["data_seed"] for r in recipes}) == len(recipes)
    assert {r["init"] for r in recipes} <= set(map(str, starts)) and recipes[0]["init"] == str(starts[-1])


def test_new_blocks_on_the_sft_backbone_start_silent_and_shared():
    """sft_reward_model: with zero output projections the new blocks pass the SFT's features through unchanged,
    and their init depends on the seed alone (every RM of a run shares it), not on the caller's random stream."""
    torch.manual_seed(0)
    shape = ModelConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=16)
    sft_model = GPT(shape).eval()
    sft = {"model": sft_model.state_dict(), "model_config": dataclasses.asdict(shape)}
    rm = sft_reward_model(sft, head_layers=2, seed=3).eval()
    assert len(rm.backbone.blocks) == 4
    idx = torch.randint(0, 64, (3, 10))
    with torch.no_grad():
        torch.testing.assert_close(rm.features(idx), sft_model.hidden_states(idx)[:, -1])
    state = torch.random.get_rng_state()
    again, other = sft_reward_model(sft, 2, seed=3), sft_reward_model(sft, 2, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    new = "backbone.blocks.3.attn.qkv.weight"
    assert torch.equal(rm.state_dict()[new], again.state_dict()[new]) and not torch.equal(rm.state_dict()[new], other.state_dict()[new])
    assert rm.state_dict()["backbone.blocks.3.mlp.proj.weight"].abs().sum() == 0


def test_chosen_rejected_follow_the_labels():
    pairs = prefs.Pairs(doc=[0, 1], a=[[1], [2]], b=[[3], [4]], score_a=torch.zeros(2), score_b=torch.zeros(2),
                        label=torch.tensor([True, False]), clean=torch.tensor([False, False]), flipped=torch.tensor([True, False]))
    assert pairs.chosen_rejected() == ([[1], [4]], [[3], [2]])
    assert pairs.chosen_rejected(clean=True) == ([[3], [4]], [[1], [2]])
    assert len(pairs.head(1)) == 1


def test_the_labeler_abstains_on_ties():
    scores = [[1.0, 1.0, 0.5], [1.0, 1.0, 1.0 + 1e-12], [0.0, 1.0, 0.0]]  # doc 1: three perfect summaries
    assert prefs.untied_pairs(scores, first_only=False) == [(0, 0, 2), (0, 1, 2), (2, 0, 1), (2, 1, 2)]
    assert prefs.untied_pairs(scores, first_only=True) == [(0, 0, 2), (2, 0, 1)]  # evaluation: one pair per document


@pytest.mark.parametrize("one_kind", [True, False])
def test_the_curriculum_pairs_each_edit_with_the_reference_and_fluency_edits_only_add(one_kind):
    """Curriculum pairs are (reference, edit) only, the one-fact edits' pairs the same with or without --rm.fluency_edits."""
    cfg = config.preset("tiny")
    cfg = dataclasses.replace(cfg, rm=dataclasses.replace(cfg.rm, one_kind_per_doc=one_kind))
    docs, enc = world.generate_documents(30, seed=1), _fake_enc()
    built = {}
    for fluency in (False, True):
        summaries = [[] for _ in docs]
        prefs.add_edits(cfg, docs, summaries, 3, stream="curriculum", fluency=fluency)
        assert all(len(s) == 1 + 3 + 2 * fluency for s in summaries)
        built[fluency] = prefs.labeled_pairs(cfg, "curriculum", docs, summaries, enc)
        refs = {tuple(tok.encode_with_specials(enc, summ[0])) for summ in summaries}
        assert all(tuple(a) in refs for a in built[fluency].a)  # summary a is always the reference
        assert bool((built[fluency].score_a > built[fluency].score_b).all())
    without, with_ = built[False], built[True]
    assert len(with_) == len(without) + 2 * len(docs)
    kept = [k for k in range(len(with_)) if with_.b[k] in without.b]
    assert [with_.b[k] for k in kept] == without.b and [with_.doc[k] for k in kept] == without.doc


def _fake_enc():
    ranks = {bytes([i]): i for i in range(256)}
    return tok.build_encoding(ranks)


@pytest.fixture(scope="module")
def tiny_world():
    docs = world.generate_documents(12, seed=0)
    enc = tok.build_encoding(tok.train_bpe(world.world_text(docs), 400))
    rng = torch.Generator().manual_seed(0)
    eot = enc.encode_single_token(world.EOT)
    a = [tok.encode(enc, d.reference) + [eot] for d in docs]
    b = [tok.encode(enc, world.reference_summary(docs[(i + 1) % len(docs)])) for i in range(len(docs))]
    label = torch.rand(len(docs), generator=rng) < 0.5
    pairs = prefs.Pairs(doc=list(range(len(docs))), a=a, b=b, score_a=torch.ones(len(docs)), score_b=torch.zeros(len(docs)),
                        label=label, clean=label.clone(), flipped=torch.zeros(len(docs), dtype=torch.bool))
    return enc, docs, pairs
