import math

import pytest
import torch

from warm_mini import data, world
from warm_mini import tokenizer as tok
from warm_eval.policies import best_of_n, bon_kl, win_rate
from warm_mini.reward import score_summaries


def test_bon_kl():
    assert bon_kl(1) == 0.0
    assert bon_kl(2) == pytest.approx(math.log(2) - 0.5)
    kls = [bon_kl(n) for n in (1, 2, 4, 8, 64, 1000)]
    assert all(x < y for x, y in zip(kls, kls[1:]))


# 3 documents, 4 samples each; sample j of document d has control reward j + 10 d, so later samples are better.
CONTROL = torch.arange(4.0).repeat(3, 1) + 10 * torch.arange(3.0)[:, None]


def test_best_of_n_follows_a_good_proxy_up():
    out = best_of_n(CONTROL.clone(), CONTROL, [1, 2, 4])
    assert out[1] == pytest.approx(CONTROL[:, 0].mean().item())  # n = 1: no choice, the first sample
    assert out[1] < out[2] < out[4]
    assert out[4] == pytest.approx(CONTROL.max(dim=1).values.mean().item())


def test_best_of_n_follows_a_bad_proxy_down():
    out = best_of_n(CONTROL, CONTROL.flip(1), [1, 2, 4])  # the proxy rises with j, the control falls
    assert out[1] > out[2] > out[4]


def test_best_of_n_ties_pick_the_first_sample():
    out = best_of_n(torch.zeros(3, 4), CONTROL, [4])
    assert out[4] == pytest.approx(CONTROL[:, 0].mean().item())


def test_win_rate_all_wins_and_all_ties():
    assert win_rate([2, 3, 4], [1, 1, 1]) == (1.0, 1.0, 1.0)
    rate, low, high = win_rate([1, 2, 3], [1, 2, 3])
    assert rate == 0.5 and low == high == 0.5


def test_win_rate_interval_shrinks_with_more_documents():
    def split(n_docs):  # a wins 60% of the documents
        a = [1.0] * (6 * n_docs // 10) + [0.0] * (4 * n_docs // 10)
        return win_rate(a, [0.5] * n_docs)

    small, large = split(20), split(500)
    for rate, low, high in (small, large):
        assert rate == pytest.approx(0.6)
        assert low < 0.6 < high
    assert large[2] - large[1] < small[2] - small[1]


class CountTokens(torch.nn.Module):
    """A stand-in reward model: the number of real (unpadded) tokens in each row."""

    def forward(self, idx, attention_mask):
        return attention_mask.sum(dim=1).float()


class LastToken(torch.nn.Module):
    """A stand-in reward model: the id of each row's last token, which left padding keeps in the last column."""

    def forward(self, idx, attention_mask):
        return idx[:, -1].float()


def test_score_summaries_matches_a_hand_computation():
    enc = tok.build_encoding({bytes([i]): i for i in range(256)})  # byte-level: cheap, no training
    docs = world.generate_documents(3, seed=0)
    summaries = [[65], [66, 67, 68], [69, 70]]
    expected_len = [len(data.prompt_ids(enc, d)) + len(s) for d, s in zip(docs, summaries)]
    for batch_size in (2, 64):  # a batch split must not change anything
        assert score_summaries(CountTokens(), enc, docs, summaries, batch_size=batch_size).tolist() == expected_len
        assert score_summaries(LastToken(), enc, docs, summaries, batch_size=batch_size).tolist() == [65, 68, 70]
