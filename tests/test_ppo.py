"""PPO: a toy problem with a known optimum, the KL it logs and charges, GAE, whitening, the clipped losses,
the missing end-of-text penalty, the critic's two starts, and resuming."""

import copy
import itertools
import math
import time

import pytest
import torch
import torch.nn as nn

from warm_mini import data
from warm_mini.config import ModelConfig, PPOConfig
from warm_mini.model import GPT, generate, sequence_logprobs
from warm_mini.ppo import (PPOTrainer, ValueModel, gae, has_eot, join_left_padded, penalise_missing_eot,
                           per_token_kl, ppo_losses, rewards_with_kl, whiten)
from warm_mini.reward import RewardModel
from warm_pipeline.rl_stage import budget_iteration, check_finite
from warm_mini.train import Diverged

PAD, EOT, TARGET = 0, 1, 2  # the toy vocabulary: tokens 3.. are ordinary words
V, PROMPT_LEN = 8, 3
TINY = ModelConfig(vocab_size=V, block_size=16, n_layer=1, n_head=2, n_embd=16)


class TargetShare(nn.Module):
    """Toy reward interface: the share of the response's tokens that are TARGET (every prompt has PROMPT_LEN
    tokens, so the response is what follows them). Optimum: always TARGET, never EOT, reward 1."""

    def forward(self, idx, attention_mask):
        T = idx.size(1)
        n_response = attention_mask.sum(dim=1) - PROMPT_LEN  # left-padded: the response is the last n columns
        in_response = torch.arange(T, device=idx.device)[None] >= T - n_response[:, None]
        return ((idx == TARGET) & in_response).sum(dim=1).float() / n_response


def toy_prompts(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(3, V, (n, PROMPT_LEN), generator=g)
    return prompt, torch.ones_like(prompt, dtype=torch.bool)


def toy_trainer(seed: int = 0, device: str = "cpu", dtype: str = "float32", **overrides) -> PPOTrainer:
    torch.manual_seed(seed)
    policy = GPT(TINY).to(device)
    cfg = PPOConfig(**{"batch_size": 32, "minibatch_size": 8, "epochs": 4, "lr": 3e-3, "kl_coef": 0.01,
                       "max_new_tokens": 4, "missing_eot_penalty": 0.0, **overrides})
    return PPOTrainer(cfg, policy, copy.deepcopy(policy), ValueModel.from_policy(policy), TargetShare(), EOT, PAD, seed, dtype)


@torch.no_grad()
def p_target_first(policy, prompt, mask, temperature: float = 0.9) -> float:
    """Mean probability that the first response token is TARGET."""
    logits, _ = policy(prompt, mask)
    return torch.softmax(logits[:, -1].float() / temperature, dim=-1)[:, TARGET].mean().item()


def test_ppo_solves_a_toy_problem_with_a_known_optimum():
    trainer = toy_trainer()
    eval_prompt, eval_mask = toy_prompts(64, seed=99)
    p_before = p_target_first(trainer.policy, eval_prompt, eval_mask)
    rewards = []
    for it in range(20):
        metrics, _ = trainer.step(*toy_prompts(32, seed=it))
        rewards.append(metrics["objective/proxy_reward"])
    p_after = p_target_first(trainer.policy, eval_prompt, eval_mask)
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    print(f"reward {first:.3f} -> {last:.3f}, p(TARGET) {p_before:.3f} -> {p_after:.3f}, kl {metrics['objective/kl']:.2f}")
    assert first < 0.3  # about 1/8 at the start: a near-uniform policy
    assert last > 0.9
    assert p_before < 0.2 and p_after > 0.95  # toward the optimum, p = 1
    assert metrics["objective/kl"] > 1.0  # it had to move far from the reference to get there


def test_logged_kl_is_the_penalised_kl():
    trainer = toy_trainer(kl_coef=0.05)
    metrics, rollout = trainer.step(*toy_prompts(32, seed=0))
    assert metrics["objective/kl"] == 0.0  # policy == reference: exactly, as both use one forward pass
    metrics, rollout = trainer.step(*toy_prompts(32, seed=1))
    mask = rollout["response_mask"]
    last = mask.sum(dim=1) - 1
    kl_part = rollout["rewards"].clone()
    kl_part[torch.arange(len(last)), last] -= rollout["scores_with_penalty"]
    charged = (kl_part / -trainer.cfg.kl_coef).sum(dim=1).mean().item()
    assert metrics["objective/kl"] != 0.0
    assert charged == pytest.approx(metrics["objective/kl"], rel=1e-4, abs=1e-6)


def test_per_token_kl_estimates_the_exact_sequence_kl():
    """Enumerate all 3^2 responses of a 3-token vocabulary to get KL(pi || ref) exactly; the Monte Carlo mean
    of the summed per-token estimate must agree within its standard error."""
    cfg = ModelConfig(vocab_size=3, block_size=8, n_layer=1, n_head=1, n_embd=8)
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        m = GPT(cfg).eval()
        nn.init.normal_(m.tok_emb.weight, std=0.5)  # far from uniform, so the KL is not tiny
        models.append(m)
    pi, ref = models
    temperature, n = 0.9, 4000
    prompt = torch.tensor([[0, 1]])
    ones = torch.ones(1, 2, dtype=torch.bool)

    every = torch.tensor(list(itertools.product(range(3), repeat=2)))  # (9, 2)
    P, M = prompt.expand(9, -1), ones.expand(9, -1)
    with torch.no_grad():
        logp = sequence_logprobs(pi, P, M, every, M, temperature).sum(dim=1)
        logq = sequence_logprobs(ref, P, M, every, M, temperature).sum(dim=1)
    assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    exact = (logp.exp() * (logp - logq)).sum().item()

    g = torch.Generator().manual_seed(0)
    response, logprobs, mask = generate(pi, prompt.expand(n, -1), ones.expand(n, -1), 2, temperature, generator=g)
    with torch.no_grad():
        ref_logprobs = sequence_logprobs(ref, prompt.expand(n, -1), ones.expand(n, -1), response, mask, temperature)
    samples = per_token_kl(logprobs, ref_logprobs).sum(dim=1)
    stderr = samples.std().item() / math.sqrt(n)
    assert exact > 0.1
    assert abs(samples.mean().item() - exact) < 4 * stderr


def test_rewards_with_kl_by_hand():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -3.0, 0.0]])
    ref_logprobs = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    rewards = rewards_with_kl(torch.tensor([10.0, 20.0]), logprobs, ref_logprobs, mask, kl_coef=0.1)
    expected = torch.tensor([[-0.05, 0.1, 10.0], [-0.1, 20.2, 0.0]])  # score lands on each row's last real token
    torch.testing.assert_close(rewards, expected)


def test_gae_by_hand_with_a_row_that_ends_early():
    rewards = torch.tensor([[0.1, 0.2, 1.0], [0.5, 2.0, 9.0]])
    values = torch.tensor([[0.3, 0.4, 0.5], [0.6, 0.7, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)  # row 1's third column is padding: 9.0, 5.0 ignored
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # row 0: deltas 0.1+0.4-0.3, 0.2+0.5-0.4, 1.0+0-0.5 = 0.2, 0.3, 0.5; A = 0.2+0.95*(0.3+0.95*0.5), 0.3+0.95*0.5, 0.5
    # row 1: the value after its last real token is 0: deltas 0.5+0.7-0.6, 2.0+0-0.7 = 0.6, 1.3
    expected = torch.tensor([[0.93625, 0.775, 0.5], [0.6 + 0.95 * 1.3, 1.3, 0.0]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + values * mask)
    adv_discounted, _ = gae(rewards, values, mask, gamma=0.5, lam=1.0)
    assert adv_discounted[1, 0].item() == pytest.approx(0.5 + 0.5 * 2.0 - 0.6)  # lam 1: discounted return - V


def test_whiten_over_masked_entries():
    torch.manual_seed(0)
    x = torch.randn(4, 6) * 3 + 5
    mask = torch.rand(4, 6) > 0.3
    w = whiten(x, mask)
    assert w[mask].mean().item() == pytest.approx(0.0, abs=1e-5)
    assert w[mask].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    assert (w[~mask] == 0).all()


def test_clipped_losses_and_clipfrac_by_hand():
    ratio = torch.tensor([[1.5, 0.5, 0.5, 1.1, 3.0]])
    old = torch.tensor([[-1.0, -2.0, -0.5, -1.5, -1.0]])
    new = old + ratio.log()
    adv = torch.tensor([[1.0, 1.0, -2.0, -1.0, 5.0]])
    old_v = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]])
    new_v = torch.tensor([[0.5, 0.5, 0.9, -1.0, 7.0]])
    returns = torch.tensor([[1.0, 0.3, 0.0, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]], dtype=torch.bool)  # the last token, wild in every way, is padding
    policy_loss, value_loss, stats = ppo_losses(new, old, adv, new_v, old_v, returns, mask, 0.2, 0.2)
    # per token max(-A r, -A clip(r)): max(-1.5, -1.2), max(-0.5, -0.8), max(1.0, 1.6), max(1.1, 1.1)
    assert policy_loss.item() == pytest.approx((-1.2 - 0.5 + 1.6 + 1.1) / 4)
    assert stats["policy/clipfrac"].item() == pytest.approx(2 / 4)  # tokens 0 and 2; token 3 is a tie
    # per token max((v - R)^2, (v_clipped - R)^2), v_clipped: 0.2, 0.2, 0.9, -0.2
    assert value_loss.item() == pytest.approx(0.5 * (0.64 + 0.04 + 0.81 + 0.64) / 4)
    assert stats["val/clipfrac"].item() == pytest.approx(2 / 4)
    r = ratio[0, :4]
    assert stats["policy/approx_kl"].item() == pytest.approx(((r - 1) - r.log()).mean().item(), rel=1e-5)
    assert stats["policy/entropy"].item() == pytest.approx(-new[0, :4].mean().item(), rel=1e-5)
    err, ret = (returns - new_v)[0, :4], returns[0, :4]
    assert stats["val/explained_variance"].item() == pytest.approx(1 - err.var().item() / ret.var().item(), rel=1e-5)


def test_missing_eot_penalty_applies_only_to_unfinished_rows():
    response = torch.tensor([[5, EOT, PAD], [5, 6, 7], [EOT, PAD, PAD], [5, 6, PAD]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    finished = has_eot(response, mask, EOT)
    assert finished.tolist() == [True, False, True, False]
    assert not has_eot(torch.tensor([[5, EOT]]), torch.tensor([[True, False]]), EOT).item()  # padding is not an end
    scores = penalise_missing_eot(torch.tensor([1.0, 2.0, 3.0, 4.0]), finished, -1.5)
    assert scores.tolist() == [1.0, 0.5, 3.0, 2.5]

    trainer = toy_trainer(missing_eot_penalty=-2.0)
    metrics, rollout = trainer.step(*toy_prompts(32, seed=0))
    unfinished = ~has_eot(rollout["response"], rollout["response_mask"], EOT)
    assert 0 < unfinished.sum() < 32  # both kinds in the rollout
    torch.testing.assert_close(rollout["scores_with_penalty"] - rollout["score"], -2.0 * unfinished.float())
    assert metrics["objective/non_eot_frac"] == pytest.approx(unfinished.float().mean().item())


def test_reward_model_reads_joined_rows_like_unpadded_ones():
    torch.manual_seed(0)
    rm = RewardModel(TINY).eval()
    prompt, prompt_mask = data.left_pad([[3, 4, 5], [6, 7]], PAD)
    response = torch.tensor([[2, EOT, PAD], [3, 4, 5]])
    response_mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    idx, mask = join_left_padded(prompt, prompt_mask, response, response_mask)
    assert mask[:, -1].all()
    alone = torch.cat([rm(torch.tensor([[3, 4, 5, 2, EOT]])), rm(torch.tensor([[6, 7, 3, 4, 5]]))])
    torch.testing.assert_close(rm(idx, mask), alone, atol=1e-5, rtol=0)


def test_value_model_starts():
    torch.manual_seed(0)
    rm = RewardModel(TINY).eval()  # normaliser 0 and 1: its reward is its head's output
    critic = ValueModel(rm.backbone, rm.head).eval()
    prompt, prompt_mask = data.left_pad([[3, 4, 5], [6, 7]], PAD)
    response = torch.tensor([[2, 6, PAD], [3, 4, 5]])
    response_mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    values = critic(prompt, prompt_mask, response, response_mask)
    # value t is read where a reward model reads the reward of the prompt and response[:t]
    expected = torch.stack([rm(*join_left_padded(prompt, prompt_mask, response[:, :t], response_mask[:, :t]))
                            if t else rm(prompt, prompt_mask) for t in range(3)], dim=1) * response_mask
    torch.testing.assert_close(values, expected, atol=1e-5, rtol=0)
    policy = GPT(TINY)
    fresh = ValueModel.from_policy(policy)
    assert (fresh(prompt, prompt_mask, response, response_mask) == 0).all()
    assert fresh.backbone is not policy and torch.equal(fresh.backbone.tok_emb.weight, policy.tok_emb.weight)


def test_resuming_repeats_the_same_iteration():
    trainer = toy_trainer()
    trainer.step(*toy_prompts(32, seed=0))
    state = copy.deepcopy(trainer.state_dict())
    expected, _ = trainer.step(*toy_prompts(32, seed=1))

    resumed = toy_trainer()  # the same frozen reference; the initial policy, optimizer and generators
    resumed.load_state_dict(state)
    assert resumed.iteration == 1
    got, _ = resumed.step(*toy_prompts(32, seed=1))
    for k in expected:
        if not k.startswith("time/"):
            assert got[k] == pytest.approx(expected[k], rel=1e-5, abs=1e-6), k


def test_warmup_raises_the_learning_rate_linearly_then_holds_it():
    trainer = toy_trainer(warmup_iterations=4)
    lrs = []
    for it in range(6):
        trainer.step(*toy_prompts(8, seed=it))
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([3e-3 * k / 4 for k in (1, 2, 3, 4, 4, 4)])
    resumed = toy_trainer(warmup_iterations=4)
    resumed.load_state_dict(trainer.state_dict())
    resumed.iteration = 1  # a run resumed early in the warm-up takes the warm-up's rate, not the saved one
    resumed.step(*toy_prompts(8, seed=1))
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(3e-3 * 2 / 4)


class SlowTargetShare(TargetShare):
    """TargetShare that takes a known time, so that the iteration's time split can be checked."""

    def forward(self, idx, attention_mask):
        time.sleep(0.3)
        return super().forward(idx, attention_mask)


def test_time_split_adds_up_to_the_iteration():
    trainer = toy_trainer()
    trainer.reward_model = SlowTargetShare()
    start = time.perf_counter()
    metrics, _ = trainer.step(*toy_prompts(32, seed=0))
    wall = time.perf_counter() - start
    assert 0.3 <= metrics["time/reward_model"] <= metrics["time/scoring"]
    phases = metrics["time/generation"] + metrics["time/scoring"] + metrics["time/update"]
    assert 0.8 * wall - 0.05 <= phases <= wall  # counting the reward model twice would add 0.3 s


class NaNReward(TargetShare):
    def forward(self, idx, attention_mask):
        return super().forward(idx, attention_mask) * float("nan")


def test_a_non_finite_reward_stops_ppo_before_it_is_logged(tmp_path):
    trainer = toy_trainer()
    metrics, _ = trainer.step(*toy_prompts(32, seed=0))
    check_finite(trainer, metrics, "ppo toy", tmp_path / "state.pt")  # a healthy iteration passes
    trainer.reward_model = NaNReward()
    metrics, _ = trainer.step(*toy_prompts(32, seed=1))
    with pytest.raises(Diverged, match=r"ppo toy diverged at iteration 2: objective/proxy_reward.*weights not finite"):
        check_finite(trainer, metrics, "ppo toy", tmp_path / "state.pt")


def test_the_kl_budget_picks_the_last_evaluation_before_the_kl_first_exceeds_it(tmp_path):
    kls = {0: 0.0, 5: 0.4, 10: 0.9, 15: 1.3, 20: 0.8}  # the KL came back under the budget: too late to count
    (tmp_path / "eval.jsonl").write_text("".join(f'{{"iteration": {i}, "eval/kl": {kl}}}\n' for i, kl in kls.items()))
    assert budget_iteration(tmp_path, 1.0) == 10
    assert budget_iteration(tmp_path, 0.1) == 0 and budget_iteration(tmp_path, 5.0) == 20
