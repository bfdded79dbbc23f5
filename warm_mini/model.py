"""A small GPT, written to be read: the backbone of the policy, the reward models and the value model.

The public API, all of it:

    model = GPT(config)                                   # config: warm_mini.config.ModelConfig
    logits, _ = model(idx, attention_mask)                # (B, T, vocab_size)
    logits, loss = model(idx, attention_mask, targets)    # (N, vocab_size) at the N supervised positions
    h = model.hidden_states(idx, attention_mask)          # (B, T, C), after the final LayerNorm
    logits = model.lm_head_logits(h)                      # (..., vocab_size), any slice of h
    cache = model.new_cache(batch_size, max_len)          # KV cache for generation (see KVCache)
    model.num_params()
    model.estimate_mfu(tokens_per_second, seq_len=None, peak_flops=989e12)

    tokens, logprobs, mask = generate(model, prompt, prompt_mask, max_new_tokens, ...)
    logprobs = sequence_logprobs(model, prompt, prompt_mask, response, response_mask, temperature)

Conventions:
  * `attention_mask` is (B, T) with 1/True for a real token and 0/False for padding; None means "no padding".
    Batches are padded on the LEFT, so the last column of a prompt is always a real token and generation
    simply appends on the right. Padding may in fact sit anywhere: masks decide, not positions.
  * Position ids count real tokens: a token's position is the number of real tokens before it. So a
    left-padded row computes exactly what the same row without padding computes.
  * `targets` are aligned with `idx` (targets[:, t] is the token that should follow idx[:, t]); positions
    whose target is IGNORE_INDEX do not count in the loss. That is how "LM loss on the summary only" is done.
  * A reward or value head reads `hidden_states(...)[:, -1]` (the last real token, thanks to left padding)
    and never pays for the (B, T, vocab_size) logits.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from warm_mini.config import ModelConfig

IGNORE_INDEX = -100  # target value that the loss skips (PyTorch's own default for cross_entropy)


class KVCache:
    """Keys and values of the tokens seen so far, so each new token costs one position, not the whole prefix.

    Per layer, k and v are (B, n_head, max_len, head_dim), allocated once at full length on first use (with
    the dtype the layer produces, so bf16 autocast just works) and filled in place as tokens arrive.
    `key_mask` (B, max_len) remembers which cached keys are real tokens, `n_real` (B,) how many real tokens
    each row has so far (= the position id of its next real token), `length` how many columns are filled.
    """

    def __init__(self, n_layer: int, batch_size: int, max_len: int, device):
        self.max_len = max_len
        self.k = [None] * n_layer
        self.v = [None] * n_layer
        self.key_mask = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.n_real = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Write this step's k, v (B, nh, T, hd) after the cached ones; return all keys and values so far."""
        if self.k[layer] is None:
            B, nh, _, hd = k.shape
            self.k[layer] = k.new_zeros(B, nh, self.max_len, hd)
            self.v[layer] = v.new_zeros(B, nh, self.max_len, hd)
        start, end = self.length, self.length + k.size(2)
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]  # (B, nh, end, hd)


def attention_allowed(key_mask: torch.Tensor, n_query: int) -> torch.Tensor:
    """Boolean (B, 1, T, S) mask of which keys each query may look at; the T queries are the last T of S.

    A query sees earlier-or-same keys that are real tokens. It also always sees itself: a left-pad query
    would otherwise have no key at all, a softmax over nothing, which some attention kernels turn into NaN.
    Its output is junk but finite, and no real token ever reads it: pad keys are visible to their own query only.
    """
    S = key_mask.size(1)
    k_idx = torch.arange(S, device=key_mask.device)
    q_idx = k_idx[S - n_query:]
    causal = k_idx[None, :] <= q_idx[:, None]  # (T, S)
    allowed = causal[None] & key_mask[:, None, :]  # (B, T, S)
    allowed = allowed | (k_idx[None, :] == q_idx[:, None])[None]  # the diagonal
    return allowed[:, None]  # (B, 1, T, S), broadcast over heads


def packed_attention(segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention mask (B, 1, T, T) and position ids (B, T) of packed rows [prompt | response 1 | ... | response K].

    segments (B, T): 0 for prompt tokens, k >= 1 for the tokens of response k, -1 for padding (anywhere).
    A token sees the earlier prompt tokens and the earlier tokens of its own segment, never another
    response; its position is the number of tokens it sees before itself, so every response's positions
    restart after the prompt. Each response thus computes exactly what [prompt | response k] alone would,
    and K responses cost one prompt. Padding sees only itself (see attention_allowed).
    """
    T = segments.size(1)
    causal = torch.ones(T, T, dtype=torch.bool, device=segments.device).tril()  # (T, T)
    q, k = segments[:, :, None], segments[:, None, :]  # (B, T, 1), (B, 1, T)
    allowed = causal & (q >= 0) & (k >= 0) & ((k == 0) | (k == q))  # (B, T, T)
    pos = (allowed.sum(-1) - 1).clamp(min=0)  # (B, T)
    allowed = allowed | torch.eye(T, dtype=torch.bool, device=segments.device)
    return allowed[:, None], pos


def rotary_tables(head_dim: int, max_len: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (max_len, head_dim / 2) of the rotary angles pos * base^(-2i / head_dim)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (hd/2,)
    angles = torch.arange(max_len, dtype=torch.float32)[:, None] * inv_freq[None]  # (max_len, hd/2)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (RoPE): turn each pair of channels (i, i + hd/2) of q or k by its angle.

    x: (B, T, 2, nh, hd), q and k; cos, sin: (B, T, 1, 1, hd/2). After rotation the dot product q_t . k_s depends on
    t - s only, so attention "to the token before me" is one pattern for every position: the first
    half of the copy (induction) circuit that summarising needs, learned far sooner than with
    absolute position embeddings.
    """
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must split evenly into heads"
        self.layer = layer  # index into the KV cache
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # all heads' q, k, v at once
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x, rope, allowed=None, cache=None):
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head)  # (B, T, 3, nh, hd): q, k, v of every head
        qk = rotate(qkv[:, :, :2], *rope)  # q and k rotated in one pass; keys enter the cache already rotated
        # heads next to the batch dim: (B, nh, T, hd)
        q, k, v = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, nh, S, hd), S = cached + T
        dropout_p = self.dropout if self.training else 0.0
        if allowed is None:  # no padding, no cache: the fused causal kernel needs no mask tensor
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again: (B, T, C)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.up = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x):  # (B, T, C) -> (B, T, 4C) -> (B, T, C)
        return self.drop(self.proj(F.gelu(self.up(x))))


class Block(nn.Module):
    """Pre-LayerNorm block: each branch reads a normalised copy and adds its result to the residual stream."""

    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, rope, allowed=None, cache=None):
        x = x + self.attn(self.ln_1(x), rope, allowed, cache)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        # Positions enter through rotary embeddings inside attention (`rotate`); no position table.
        cos, sin = rotary_tables(config.n_embd // config.n_head, config.block_size)
        self.register_buffer("rope_cos", cos, persistent=False)  # derived, so not in the state dict
        self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: reading a token and predicting it share one matrix (fewer parameters, better small models).
        self.lm_head.weight = self.tok_emb.weight

        self.apply(self._init_weights)
        # Every block adds two projections into the residual stream; shrinking their init keeps the
        # stream's variance from growing with depth (GPT-2's 1/sqrt(number of residual additions)).
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp.proj):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for up to `max_len` tokens (prompt + generated; default block_size)."""
        max_len = max_len or self.config.block_size
        return KVCache(self.config.n_layer, batch_size, max_len, self.tok_emb.weight.device)

    def hidden_states(self, idx, attention_mask=None, cache=None, segments=None):
        """Final hidden states (B, T, C) after the last LayerNorm.

        idx: (B, T) token ids; attention_mask: (B, T), None = all real. With a cache, idx holds only the
        new tokens (the whole padded prompt for the prefill, then one column per step) and their mask.
        Without a cache, an all-real mask (found with one host sync) takes the same fast path as None.
        segments (B, T), instead of a mask: packed rows, one prompt and several responses (packed_attention).
        """
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        # (a packed row may be longer: its positions, checked below, restart for each response)
        assert segments is not None or past + T <= self.config.block_size, \
            f"sequence of {past + T} tokens exceeds block_size {self.config.block_size}"
        if attention_mask is not None and cache is None and bool(attention_mask.all()):
            attention_mask = None  # all real: take the fast path below
        if segments is not None:
            allowed, pos = packed_attention(segments)
            assert int(pos.max()) < self.config.block_size, f"a packed response reaches position {int(pos.max())}, past block_size"
        elif attention_mask is None and cache is None:
            pos = torch.arange(T, device=idx.device)[None]  # (1, T)
            allowed = None  # causal attention without a mask tensor
        else:
            mask = torch.ones_like(idx, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
            n_before = cache.n_real[:, None] if cache is not None else 0  # real tokens already in the cache
            pos = (n_before + mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, T)
            if cache is not None:
                cache.key_mask[:, past:past + T] = mask
                mask = cache.key_mask[:, :past + T]  # (B, S): every key so far
            allowed = attention_allowed(mask, T)  # (B, 1, T, S)

        rope = self.rope_cos[pos][:, :, None, None], self.rope_sin[pos][:, :, None, None]  # 2 x (B or 1, T, 1, 1, hd/2)
        x = self.drop(self.tok_emb(idx))  # (B, T, C)
        for block in self.blocks:
            x = block(x, rope, allowed, cache)
        if cache is not None:
            cache.n_real += cache.key_mask[:, past:past + T].sum(dim=1)
            cache.length += T
        return self.ln_f(x)  # (B, T, C)

    def lm_head_logits(self, h):
        """Next-token logits (..., vocab_size) from hidden states (..., C)."""
        return self.lm_head(h)

    def forward(self, idx, attention_mask=None, targets=None, cache=None):
        """Without targets: (logits (B, T, vocab_size), None).

        With targets: (logits (N, vocab_size) at the N positions whose target is not IGNORE_INDEX, their
        mean cross-entropy). The vocabulary projection is the largest matmul of a small model, and SFT
        supervises only the summary, a sixth of the tokens: projecting only those makes SFT much cheaper.
        If every target is IGNORE_INDEX the loss is NaN (a mean over nothing), so keep at least one.
        """
        h = self.hidden_states(idx, attention_mask, cache)  # (B, T, C)
        if targets is None:
            return self.lm_head_logits(h), None
        supervised = targets != IGNORE_INDEX  # (B, T)
        if bool(supervised.all()):  # pretraining: every position (a view; gathering them would copy, and scatter back)
            h, targets = h.flatten(0, 1), targets.flatten()
        else:
            h, targets = h[supervised], targets[supervised]
        logits = self.lm_head_logits(h)  # (N, vocab_size)
        # in float32: bf16 log-softmax over thousands of classes loses the small probabilities
        return logits, F.cross_entropy(logits.float(), targets)

    def num_params(self) -> int:
        """Parameter count; the token table is counted once although it is also the output layer, where
        it does a matmul per token like any other weight (so it belongs in the 6N of estimate_mfu)."""
        return sum(p.numel() for p in self.parameters())  # parameters() yields the tied matrix once

    def estimate_mfu(self, tokens_per_second: float, seq_len: int | None = None, peak_flops: float = 989e12) -> float:
        """Model FLOPs utilisation of training that processes `tokens_per_second` (forward + backward).

        FLOPs per token = 6N (2 per weight in the forward, 4 in the backward) + 12·L·H·Q·T for attention
        scores and their weighted sums (Q = head dim, T = seq_len, default block_size), as in the PaLM paper.
        For generation only (forward) divide the result by 3. peak_flops defaults to an H100 SXM's dense
        bf16 peak, 989 TFLOPS; pass your hardware's number.
        """
        cfg = self.config
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, seq_len or cfg.block_size
        flops_per_token = 6 * self.num_params() + 12 * L * H * Q * T
        return flops_per_token * tokens_per_second / peak_flops



def _logprobs(logits, temperature: float):
    """log-softmax(logits / temperature) in float32; temperature 0 (greedy) uses temperature 1."""
    t = temperature if temperature > 0 else 1.0
    return F.log_softmax(logits.float() / t, dim=-1)


@torch.no_grad()
def generate(model: GPT, prompt, prompt_mask, max_new_tokens: int, temperature: float = 1.0, eot_id: int | None = None,
             pad_id: int = 0, generator: torch.Generator | None = None, use_cache: bool = True):
    """Sample up to `max_new_tokens` continuations of a left-padded batch of prompts.

    prompt, prompt_mask: (B, T), padded on the left (prompt_mask[:, -1] must be all real).
    temperature 0 is greedy.
    A row stops after sampling `eot_id`, which is kept as its last real token; later columns hold `pad_id`
    with mask 0. The loop ends as soon as every row has stopped, so N <= max_new_tokens.

    Returns tokens (B, N) long, logprobs (B, N) float32, mask (B, N) bool.
    logprobs are log-softmax(logits / temperature) of the sampled token: exactly what `sequence_logprobs`
    recomputes and what PPO's ratio needs (no top-k or top-p, which would change the distribution sampled).
    For greedy decoding the logprobs are at temperature 1. Padded columns have logprob 0.

    Runs under no_grad (not inference_mode: its outputs must be usable as inputs to a later training
    forward). The model is put in eval mode (no dropout) and given back in the mode it was in.
    use_cache=False re-runs the whole sequence every step: slow, kept for the benchmark and tests.
    """
    B, T = prompt.shape
    device = prompt.device
    prompt_mask = prompt_mask.bool()
    assert bool(prompt_mask[:, -1].all()), "prompts must be padded on the left"
    was_training = model.training
    model.eval()
    try:
        tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
        logprobs = torch.zeros(B, max_new_tokens, dtype=torch.float32, device=device)
        mask = torch.zeros(B, max_new_tokens, dtype=torch.bool, device=device)
        done = torch.zeros(B, dtype=torch.bool, device=device)

        cache = model.new_cache(B, T + max_new_tokens) if use_cache else None
        h = model.hidden_states(prompt, prompt_mask, cache)[:, -1]  # (B, C): the prefill
        n = 0
        for t in range(max_new_tokens):
            logits = model.lm_head_logits(h).float()  # (B, V)
            logp = _logprobs(logits, temperature)  # (B, V)
            if temperature == 0:
                nxt = logits.argmax(dim=-1)
            else:
                nxt = torch.multinomial(F.softmax(logits / temperature, dim=-1), 1, generator=generator).squeeze(1)  # (B,)
            alive = ~done
            tokens[:, t] = torch.where(alive, nxt, pad_id)
            logprobs[:, t] = torch.where(alive, logp.gather(1, nxt[:, None]).squeeze(1), 0.0)
            mask[:, t] = alive
            n = t + 1
            if eot_id is not None:
                done = done | (nxt == eot_id)
            if bool(done.all()) or n == max_new_tokens:
                break
            if use_cache:  # feed only the new column; finished rows feed a pad the others never see
                h = model.hidden_states(tokens[:, t:n], mask[:, t:n], cache)[:, -1]
            else:
                seq = torch.cat([prompt, tokens[:, :n]], dim=1)
                seq_mask = torch.cat([prompt_mask, mask[:, :n]], dim=1)
                h = model.hidden_states(seq, seq_mask)[:, -1]
        return tokens[:, :n], logprobs[:, :n], mask[:, :n]
    finally:
        model.train(was_training)


def sequence_logprobs(model: GPT, prompt, prompt_mask, response, response_mask, temperature: float = 1.0):
    """Log-probabilities (B, N) of the given response tokens after their prompts, in one forward pass.

    The same quantity `generate` returns (log-softmax of logits / temperature, float32), 0 where
    response_mask is 0. Gradients flow unless the caller disables them: PPO's policy loss calls this.
    """
    T = prompt.size(1)
    seq = torch.cat([prompt, response], dim=1)  # (B, T + N)
    seq_mask = torch.cat([prompt_mask.bool(), response_mask.bool()], dim=1)
    h = model.hidden_states(seq, seq_mask)
    # the state at position i predicts token i + 1: states T-1 .. T+N-2 predict the response
    logits = model.lm_head_logits(h[:, T - 1:-1])  # (B, N, V)
    logp = _logprobs(logits, temperature).gather(2, response[:, :, None]).squeeze(2)  # (B, N)
    return logp.masked_fill(~response_mask.bool(), 0.0)
