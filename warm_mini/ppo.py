"""PPO with a per-token KL penalty: the RL stage of WARM, readable top to bottom.

One iteration (`PPOTrainer.step`) on a batch of left-padded prompts (steps 1 to 4 are `PPOTrainer.rollout`,
which evaluation reuses):

  1. rollout   sample a response per prompt from the policy at temperature 0.9 (dropout off);
  2. score     the reward model reads each left-padded prompt + response row; a response cut off at
               max_new_tokens (no end-of-text) gets a fixed penalty added to its score;
  3. rewards   per token: -kl_coef * (log pi - log pi_ref), plus the score at the last real token;
  4. GAE       advantages and returns from the value model's per-token values; advantages whitened;
  5. update    `epochs` passes of minibatch steps on the clipped policy loss + the clipped value loss.

The trainer never sees a control reward (the oracle): `step` returns the sampled responses, and the
caller (warm_pipeline/rl_stage.py) scores them for evaluation. The settings are `PPOConfig` in warm_mini/config.py
(`--ppo.*` flags). All log-probabilities (rollout, reference, update) are of
logits / temperature, in float32, so the KL that is penalised is the KL of the sampling distributions.
"""

import copy
import time

import torch
import torch.nn as nn

from warm_mini.config import PPOConfig
from warm_mini.model import GPT, generate, sequence_logprobs
from warm_mini.train import autocast, param_groups


# ----------------------------------------------------------------------------- the pieces of one iteration


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum()


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Population variance over the entries where mask is 1."""
    return masked_mean((x - masked_mean(x, mask)) ** 2, mask)


def join_left_padded(prompt, prompt_mask, response, response_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + response rows (B, T + N), padded on the left, as a reward model reads them (last column real).

    The plain concatenation has each short response's padding on the right; a stable sort of the mask moves
    the pads (mask 0) to the front and keeps the real tokens in their order.
    """
    idx = torch.cat([prompt, response], dim=1)
    mask = torch.cat([prompt_mask.bool(), response_mask.bool()], dim=1)
    order = torch.sort(mask.long(), dim=1, stable=True).indices
    return idx.gather(1, order), mask.gather(1, order)


def has_eot(response, response_mask, eot_id: int) -> torch.Tensor:
    """(B,) True where the response ended with end-of-text, False where max_new_tokens cut it off."""
    return ((response == eot_id) & response_mask.bool()).any(dim=1)


def penalise_missing_eot(score, finished, penalty: float) -> torch.Tensor:
    """Add `penalty` to the score of each unfinished response, so the policy cannot farm reward by rambling."""
    return torch.where(finished, score, score + penalty)


def per_token_kl(logprobs, ref_logprobs) -> torch.Tensor:
    """log pi(y_t) - log pi_ref(y_t) of the sampled tokens (B, N).

    Summed over a response sampled from pi, its expectation is KL(pi || pi_ref) of whole responses: an
    unbiased one-sample estimate that needs no (B, N, vocab) distributions. One sample can be negative.
    """
    return logprobs - ref_logprobs


def response_kl(logprobs, ref_logprobs, mask) -> torch.Tensor:
    """KL(pi || pi_ref) of each whole response (B,): per_token_kl summed over its real tokens."""
    return (per_token_kl(logprobs, ref_logprobs) * mask).sum(dim=1)


def rewards_with_kl(score, logprobs, ref_logprobs, mask, kl_coef: float) -> torch.Tensor:
    """Per-token rewards (B, N): -kl_coef * KL at each response token, plus the score at the last real one."""
    mask = mask.float()
    rewards = -kl_coef * per_token_kl(logprobs, ref_logprobs) * mask
    last = mask.sum(dim=1).long() - 1  # generate gives every row at least one token
    return rewards.scatter_add(1, last[:, None], score.float()[:, None])


def gae(rewards, values, mask, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the response tokens: (advantages, returns), (B, N) each.

    delta_t = r_t + gamma * V_{t+1} - V_t,   A_t = delta_t + gamma * lam * A_{t+1},   returns = A + V.
    Zeroing rewards and values after a response's end makes the value after its last real token 0 (the
    episode is over) and every later advantage 0, so one backward loop serves rows of any length.
    """
    mask = mask.float()
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    next_advantage = next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.size(1))):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages, advantages + values


def whiten(x, mask, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the entries where mask is 1; 0 elsewhere."""
    mask = mask.float()
    return (x - masked_mean(x, mask)) * torch.rsqrt(masked_var(x, mask) + eps) * mask


def explained_variance(values, returns, mask) -> torch.Tensor:
    """1 - Var(returns - values) / Var(returns): 1 = the critic predicts returns, 0 = no better than their mean."""
    return 1 - masked_var(returns - values, mask) / masked_var(returns, mask)


def ppo_losses(new_logprobs, old_logprobs, advantages, new_values, old_values, returns, mask,
               cliprange: float, cliprange_value: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Clipped policy loss and clipped value loss, means over the response tokens; plus detached stats.

    Both losses take the worse (larger) of the unclipped and the clipped term: moving the ratio outside
    [1 - cliprange, 1 + cliprange], or a value further than cliprange_value from its rollout value, then
    earns nothing, so several epochs on one rollout cannot run far from the policy that sampled it.
    """
    mask = mask.float()
    log_ratio = (new_logprobs - old_logprobs) * mask
    ratio = log_ratio.exp()
    pg_unclipped = -advantages * ratio
    pg_clipped = -advantages * ratio.clamp(1 - cliprange, 1 + cliprange)
    policy_loss = masked_mean(torch.max(pg_unclipped, pg_clipped), mask)

    values_clipped = old_values + (new_values - old_values).clamp(-cliprange_value, cliprange_value)
    vf_unclipped = (new_values - returns) ** 2
    vf_clipped = (values_clipped - returns) ** 2
    value_loss = 0.5 * masked_mean(torch.max(vf_unclipped, vf_clipped), mask)

    with torch.no_grad():
        stats = {
            # -log pi of sampled tokens estimates the per-token entropy without the full softmax
            "policy/entropy": masked_mean(-new_logprobs, mask),
            "policy/clipfrac": masked_mean((pg_clipped > pg_unclipped).float(), mask),
            # (r - 1) - log r: nonnegative, and lower variance than -log r (Schulman's k3 estimator)
            "policy/approx_kl": masked_mean((ratio - 1) - log_ratio, mask),
            "val/clipfrac": masked_mean((vf_clipped > vf_unclipped).float(), mask),
            "val/explained_variance": explained_variance(new_values, returns, mask),
        }
    return policy_loss, value_loss, stats


# ----------------------------------------------------------------------------- the critic


class ValueModel(nn.Module):
    """The critic: a GPT backbone and a scalar head giving one value per response position (B, N).

    Value t is read from the hidden state that predicts response token t (after the prompt and response[:t]),
    the state `sequence_logprobs` reads: the expected return before token t is chosen, token t's baseline.

    It starts as `from_policy(sft)` (a copy of the SFT policy, zero head), as the paper did ("policy and value
    model from SFT"): every reward source (a single RM, ENS, WARM) gets the same critic, so runs differ only in
    their reward, and ENS, which has no single backbone, needs no special case. (Public RLHF code often starts
    the critic from the reward model instead, so that early advantages are less noisy.)
    """

    def __init__(self, backbone: GPT, head: nn.Linear):
        super().__init__()
        self.backbone = backbone
        self.head = head

    @classmethod
    def from_policy(cls, policy: GPT) -> "ValueModel":
        """A copy of the policy with a zero head: every value starts at 0, the mean of normalised rewards."""
        head = nn.Linear(policy.config.n_embd, 1)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        return cls(copy.deepcopy(policy), head.to(policy.lm_head.weight.device))

    def forward(self, prompt, prompt_mask, response, response_mask) -> torch.Tensor:
        """Values (B, N) float32, 0 where response_mask is 0."""
        T = prompt.size(1)
        seq = torch.cat([prompt, response], dim=1)
        seq_mask = torch.cat([prompt_mask.bool(), response_mask.bool()], dim=1)
        h = self.backbone.hidden_states(seq, seq_mask)[:, T - 1:-1]  # (B, N, C): states before each response token
        return self.head(h).squeeze(-1).float().masked_fill(~response_mask.bool(), 0.0)


# ----------------------------------------------------------------------------- the trainer


def _clock(device: torch.device) -> float:
    """Wall time in seconds, once the device has finished its queued work (CUDA kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class PPOTrainer:
    """PPO of `policy` against `reward_model`, kept near `ref_policy` by the per-token KL penalty.

    policy: the GPT being trained (start: the SFT policy); ref_policy: a frozen copy of the SFT policy;
    value_model: a ValueModel (trained with the policy); reward_model: any module with the reward interface
    `reward_model(idx, attention_mask) -> (B,)` on left-padded prompt + response rows (a RewardModel, a WARM
    merge, an Ensemble, the oracle). The reference and the reward model are frozen here (requires_grad off).
    `seed` seeds the sampling and the minibatch order; `dtype` is the autocast dtype of the forward passes
    (train.autocast; log-probabilities are taken in float32 either way).

    The caller's loop draws `cfg.batch_size` prompts per step, `cfg.iterations` times; it also scores the
    returned responses with any control reward (the oracle), which the trainer never sees.

    Every model stays in eval mode for the whole run: dropout off, so the rollout's log-probabilities and
    values are exactly what the first update recomputes, and the KL compares the two policies themselves.
    """

    def __init__(self, cfg: PPOConfig, policy: GPT, ref_policy: GPT, value_model: ValueModel, reward_model: nn.Module,
                 eot_id: int, pad_id: int, seed: int = 0, dtype: str = "float32"):
        self.cfg = cfg
        self.policy, self.ref_policy, self.value_model, self.reward_model = policy, ref_policy, value_model, reward_model
        self.eot_id, self.pad_id = eot_id, pad_id
        for model in (policy, ref_policy, value_model, reward_model):
            model.eval()
        ref_policy.requires_grad_(False)
        reward_model.requires_grad_(False)
        self.device = policy.lm_head.weight.device
        # one optimizer for both models: the joint loss is policy_loss + vf_coef * value_loss
        groups = param_groups(policy, cfg.weight_decay) + param_groups(value_model, cfg.weight_decay)
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
        self.autocast = autocast(str(self.device), dtype)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)  # sampling, on the policy's device
        self.shuffle_generator = torch.Generator().manual_seed(seed)  # minibatch order
        self.iteration = 0

    @torch.no_grad()
    def rollout(self, prompt: torch.Tensor, prompt_mask: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """Steps 1 to 4 on left-padded prompts (B, T): sample, score, per-token rewards, advantages. No learning.

        Returns tensors: prompt, prompt_mask, response (B, N), response_mask, finished (B,), logprobs,
        ref_logprobs, values, score (B,), scores_with_penalty, rewards (B, N), advantages, returns; and seconds:
        time/generation, time/scoring (the reward model, reference, old policy, values, GAE), time/reward_model
        (the reward model alone, part of time/scoring). `generator` (default: the trainer's) draws the samples;
        evaluations pass their own, so they neither disturb nor depend on training's random stream.
        """
        cfg = self.cfg
        prompt_mask = prompt_mask.bool()
        start = _clock(self.device)
        with self.autocast:
            response, _, mask = generate(self.policy, prompt, prompt_mask, cfg.max_new_tokens, cfg.temperature,
                                         eot_id=self.eot_id, pad_id=self.pad_id, generator=generator or self.generator)
        time_generation = _clock(self.device) - start

        start = _clock(self.device)
        with self.autocast:
            score = self.reward_model(*join_left_padded(prompt, prompt_mask, response, mask)).float()
        time_reward_model = _clock(self.device) - start
        with self.autocast:
            # Recomputed rather than taken from `generate`: the same full forward as the reference and the
            # update, so a policy equal to the reference has KL exactly 0 and the first ratio is exactly 1,
            # even where the KV cache and bf16 round differently.
            logprobs = sequence_logprobs(self.policy, prompt, prompt_mask, response, mask, cfg.temperature)
            ref_logprobs = sequence_logprobs(self.ref_policy, prompt, prompt_mask, response, mask, cfg.temperature)
            values = self.value_model(prompt, prompt_mask, response, mask)
        finished = has_eot(response, mask, self.eot_id)
        scores_with_penalty = penalise_missing_eot(score, finished, cfg.missing_eot_penalty)
        rewards = rewards_with_kl(scores_with_penalty, logprobs, ref_logprobs, mask, cfg.kl_coef)
        advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = whiten(advantages, mask)
        time_scoring = _clock(self.device) - start  # `start` is before the reward model: it is counted once
        return {"prompt": prompt, "prompt_mask": prompt_mask, "response": response, "response_mask": mask,
                "finished": finished, "logprobs": logprobs, "ref_logprobs": ref_logprobs, "values": values,
                "score": score, "scores_with_penalty": scores_with_penalty, "rewards": rewards,
                "advantages": advantages, "returns": returns, "time/generation": time_generation,
                "time/scoring": time_scoring, "time/reward_model": time_reward_model}

    def step(self, prompt: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[dict, dict]:
        """One PPO iteration on left-padded prompts (B, T): a rollout, then step 5. Returns (metrics, rollout).

        metrics (floats): objective/kl (mean over responses of the summed per-token KL, the quantity the
        penalty charges), objective/proxy_reward (mean reward-model score), objective/scores_with_penalty,
        objective/non_eot_frac, objective/response_length, policy/entropy, policy/clipfrac, policy/approx_kl,
        losses/policy_loss, losses/value_loss, val/clipfrac, val/explained_variance (update stats: means over
        minibatches), time/generation, time/scoring, time/reward_model, time/update (seconds).
        rollout: what `rollout` returns; its response holds the ids a caller decodes for the control reward.
        """
        cfg = self.cfg
        ro = self.rollout(prompt, prompt_mask)
        mask, logprobs, values, advantages, returns = (ro[k] for k in ("response_mask", "logprobs", "values", "advantages", "returns"))

        start = _clock(self.device)
        for group in self.optimizer.param_groups:  # linear warm-up over the first iterations, then constant
            group["lr"] = cfg.lr * min(1.0, (self.iteration + 1) / max(1, cfg.warmup_iterations))
        stats = []
        B = prompt.size(0)
        for _ in range(cfg.epochs):
            order = torch.randperm(B, generator=self.shuffle_generator).to(self.device)
            for i in order.split(cfg.minibatch_size):
                mb = ro["prompt"][i], ro["prompt_mask"][i], ro["response"][i], mask[i]
                with self.autocast:
                    new_logprobs = sequence_logprobs(self.policy, *mb, cfg.temperature)
                    new_values = self.value_model(*mb)
                policy_loss, value_loss, mb_stats = ppo_losses(
                    new_logprobs, logprobs[i], advantages[i], new_values, values[i], returns[i], mask[i],
                    cfg.cliprange, cfg.cliprange_value)
                self.optimizer.zero_grad(set_to_none=True)
                (policy_loss + cfg.vf_coef * value_loss).backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
                self.optimizer.step()
                stats.append({**mb_stats, "losses/policy_loss": policy_loss.detach(), "losses/value_loss": value_loss.detach()})
        time_update = _clock(self.device) - start
        self.iteration += 1

        metrics = {
            "objective/kl": response_kl(logprobs, ro["ref_logprobs"], mask).mean(),
            "objective/proxy_reward": ro["score"].mean(),
            "objective/scores_with_penalty": ro["scores_with_penalty"].mean(),
            "objective/non_eot_frac": (~ro["finished"]).float().mean(),
            "objective/response_length": mask.sum(dim=1).float().mean(),
            **{k: torch.stack([s[k] for s in stats]).mean() for k in stats[0]},
        }
        metrics = {k: v.item() for k, v in metrics.items()}  # one host sync per metric, once per iteration
        metrics.update({k: ro[k] for k in ("time/generation", "time/scoring", "time/reward_model")}, **{"time/update": time_update})
        return metrics, ro

    def state_dict(self) -> dict:
        """What a resumed run needs besides the frozen reference and reward model (rebuilt by the caller)."""
        return {"policy": self.policy.state_dict(), "value_model": self.value_model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "iteration": self.iteration,
                "generator": self.generator.get_state(), "shuffle_generator": self.shuffle_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.value_model.load_state_dict(state["value_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = state["iteration"]
        self.generator.set_state(state["generator"].cpu())  # generator states are CPU byte tensors, whatever the device
        self.shuffle_generator.set_state(state["shuffle_generator"].cpu())
