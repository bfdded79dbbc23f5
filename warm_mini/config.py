"""The settings of a run: one dataclass per section, the presets (tiny, cpu, gpu), and their JSON form.

Every field's docstring line becomes its `--section.field` flag's help (warm_pipeline/cli.py).
"""

import dataclasses
import json
from dataclasses import dataclass, field

PRESETS = ("tiny", "cpu", "gpu")
DTYPES = ("float32", "bfloat16")


@dataclass
class WorldConfig:
    """The generated summarization world."""

    n_docs: int = 20000
    """number of documents generated (split into train / validation / test by `val_frac`, `test_frac`)"""
    val_frac: float = 0.05
    """share of documents held out as in-distribution validation (the paper held out ~5%)"""
    test_frac: float = 0.05
    """share of documents held out as in-distribution test"""
    label_tau: float = 0.1
    """temperature of the labeler's Bradley-Terry noise: P(prefer 1) = sigmoid((s1 - s2) / tau)"""


@dataclass
class TokenizerConfig:
    """Our own byte-level BPE, wrapped in a tiktoken.Encoding."""

    vocab_size: int = 2048
    """target vocabulary size, special tokens included (training stops early if merges run out)"""
    train_chars: int = 2_000_000
    """characters of world text the BPE is trained on"""


@dataclass
class ModelConfig:
    """Shape of the GPT backbone shared by the policy, the reward models and the value model."""

    vocab_size: int = 2048
    """rows of the token embedding; set from the trained tokenizer"""
    block_size: int = 256
    """longest sequence (document + separator + summary) the model sees"""
    n_layer: int = 2
    """transformer blocks"""
    n_head: int = 4
    """attention heads per block"""
    n_embd: int = 128
    """width of the residual stream (C)"""
    dropout: float = 0.0
    """dropout on attention weights and residual branches (off during RL)"""
    bias: bool = True
    """biases in Linear and LayerNorm layers"""


@dataclass
class TrainConfig:
    """One run of the shared training loop (pretraining, SFT, or one reward model)."""

    steps: int = 600
    """optimizer steps"""
    batch_size: int = 32
    """sequences per optimizer step (for a reward model: documents, each with all its pairs), summed over processes and micro-steps"""
    grad_accum: int = 1
    """micro-steps accumulated per optimizer step (per process)"""
    lr: float = 3e-3
    """peak learning rate"""
    min_lr_frac: float = 0.1
    """the cosine decay ends at lr * min_lr_frac"""
    warmup_steps: int = 50
    """linear warmup from 0 to lr"""
    weight_decay: float = 0.1
    """AdamW decay on weight matrices (never on norms, biases, embeddings)"""
    beta2: float = 0.99
    """AdamW second-moment decay (beta1 is 0.9)"""
    grad_clip: float = 1.0
    """clip the global gradient norm to this (0 = off)"""
    eval_every: int = 100
    """steps between evaluations (and at the end)"""
    ckpt_every: int = 100
    """steps between resumable checkpoints (and at the end)"""
    snapshot_every: int = 0
    """steps between model-only snapshots kept along the trajectory, for Baklava (0 = none)"""
    compile: bool = False
    """torch.compile the model (pays on CUDA; on a 2-core CPU it costs 30 s and gains nothing)"""


@dataclass
class RMConfig:
    """Preference pairs and the M diverse reward models."""

    n_models: int = 6
    """M: reward models fine-tuned (the paper trained 10 and averaged the top 2, 6 or 10)"""
    train_docs: int = 3000
    """training documents, each with `summaries_per_doc` sampled summaries and a label for every untied pair of them"""
    summaries_per_doc: int = 4
    """K summaries per training document: K(K-1)/2 labeled pairs, all scored in one packed row (InstructGPT's K-wise)"""
    edited_per_doc: int = 3
    """E: one-fact edits of the reference summary added, with the reference, to each training document's samples (0 = samples only)"""
    val_pairs: int = 1000
    """validation documents, each giving at most one untied pair: rank the RMs, choose the soup"""
    test_pairs: int = 1000
    """test documents, each giving at most one untied pair from the same policies (in distribution)"""
    ood_pairs: int = 1000
    """test documents, each giving at most one untied pair from shifted policies (pretrained model, SFT at temperature 1.5)"""
    corrupt: float = 0.0
    """share of training labels flipped (the paper's corrupted setting used 0.25)"""
    lr_multipliers: str = "0.5,1,2"
    """each RM's learning rate is rm_train.lr times one of these, comma separated (the paper: 1e-5, 4e-5, 1e-4)"""
    dropout_choices: str = "0.0"
    """dropout rates the RMs draw from, comma separated (the paper: 0.05, 0.1; 0 here: at this size 0.05 cost 0.06-0.08 accuracy)"""
    one_kind_per_doc: bool = True
    """all of a training document's edits are of one fact kind (they tie, so each pair is the reference against one edit)"""
    head_layers: int = 2
    """new transformer blocks between the SFT backbone and the head, output projections zero (the SFT's features at first)"""
    curriculum_steps: int = 1000
    """steps of the shared first phase on one-fact edits alone, before the M fine-tunings (0 = none: they start from SFT)"""
    curriculum_docs: int = 9000
    """training documents of the curriculum, each giving its reference and `curriculum_edits` one-fact edits of it"""
    curriculum_edits: int = 7
    """one-fact edits of each curriculum document's reference"""
    fluency_edits: bool = False
    """the curriculum's references also get two fluency edits (a two-word span said twice, two adjacent words swapped)"""
    baklava: int = 3
    """RMs start from the last this-many snapshots of the shared trajectory (Baklava): the curriculum's, else SFT's; 1 = one start"""
    probe_steps: int = 300
    """full-batch steps fitting the shared linear head on frozen SFT features"""


@dataclass
class PPOConfig:
    """PPO against a reward model, with a per-token KL penalty to the SFT policy."""

    iterations: int = 100
    """rollouts, each followed by `epochs` passes of minibatch updates (100: the single RM rises, then collapses)"""
    batch_size: int = 32
    """prompts per rollout (the paper: 128)"""
    minibatch_size: int = 16
    """rollout rows per gradient step"""
    epochs: int = 2
    """passes over each rollout: more learning per (slow, sequential) sample; the clip keeps them safe"""
    lr: float = 2e-4
    """AdamW learning rate of the policy and the value model (the paper's 1e-5 is for a far larger model)"""
    warmup_iterations: int = 0
    """the learning rate rises linearly to `lr` over this many iterations (0 = none)"""
    weight_decay: float = 0.0
    """AdamW decay on weight matrices; 0 because decay pulls toward zero, not toward SFT (the KL does that)"""
    kl_coef: float = 0.05
    """beta of the per-token penalty -beta * (log pi - log pi_ref), from a sweep (scripts/ppo_sweep.py; the paper: 0.003 to 0.01)"""
    temperature: float = 0.9
    """sampling temperature; the policy, the reference and the ratio all use log-softmax(logits / temperature)"""
    max_new_tokens: int = 48
    """longest response (references are about 20 to 30 tokens)"""
    gamma: float = 1.0
    """discount; 1 because the score is paid once, at the end of a response of at most max_new_tokens"""
    lam: float = 0.95
    """GAE lambda: 1 = Monte Carlo returns (unbiased, noisy), 0 = one-step bootstrap from the value model"""
    cliprange: float = 0.2
    """the policy ratio pi / pi_old is clipped to [1 - cliprange, 1 + cliprange]"""
    cliprange_value: float = 0.2
    """a value may move this far from its rollout value before its loss stops pulling (rewards have std 1)"""
    vf_coef: float = 0.1
    """weight of the value loss in the joint loss (one optimizer and one gradient-norm clip serve both models)"""
    centre_rewards: bool = True
    """train against r(x, y) - r(x, y_ref), y_ref the prompt's reference summary (reward.Centred): drops each document's offset"""
    missing_eot_penalty: float = -1.0
    """added to the score of a response without end-of-text: one reward std, so rambling to the cut does not pay"""
    whiten_advantages: bool = True
    """normalise advantages to mean 0, std 1 over each rollout's response tokens"""
    grad_clip: float = 1.0
    """clip the gradient norm of policy + value model to this (0 = off)"""


@dataclass
class RLHFConfig:
    """What rlhf.py trains against and how it judges the policies (PPO itself: the ppo section)."""

    rewards: str = ""
    """reward sources, comma separated: rm:I, rm:best, ens:M, warm:M, oracle (empty: rm:best, ens:M, warm:M with M = rm.n_models)"""
    kl_coefs: str = ""
    """KL coefficients to sweep, comma separated (empty: ppo.kl_coef alone); every reward source runs with each"""
    eval_every: int = 5
    """PPO iterations between evaluations on held-out documents; each keeps a policy snapshot"""
    eval_docs: int = 128
    """validation documents the control reward is measured on at each evaluation (it picks a run's best snapshot)"""
    test_docs: int = 300
    """test documents the win rates are judged on"""
    bon_docs: int = 48
    """test documents for Best-of-N"""
    bon_n: int = 64
    """largest N of Best-of-N (N = 1, 2, 4, ... up to it)"""
    bon_temperature: float = 1.0
    """temperature of the SFT samples Best-of-N picks from (the temperature of the RMs' training pairs)"""
    init_step: int = 0
    """SFT snapshot (its step) PPO starts from and the KL holds it to, Best-of-N samples and win rates call SFT; 0 = final SFT"""
    kl_budget: float = 1.0
    """the win rates also judge each run at this KL: its last evaluation before the held-out KL first exceeds it"""
    ppo_seed: int = -1
    """seed of PPO's sampling, prompt order and minibatches (-1 = --seed): reruns PPO alone on the same reward models"""


@dataclass
class Config:
    """Everything a run needs; one preset fills it, the command line adjusts it."""

    preset: str = "cpu"
    """which preset the defaults came from"""
    seed: int = 0
    """seed for the world, the tokenizer's text sample and every training run"""
    device: str = "cpu"
    """torch device: cuda when available, else cpu"""
    dtype: str = "float32"
    """float32, or bfloat16: autocast of the forward passes of training and PPO (the gpu preset's; CPUs run it too, slowly)"""
    world: WorldConfig = field(default_factory=WorldConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: TrainConfig = field(default_factory=lambda: TrainConfig(steps=200, batch_size=16, lr=3e-3, warmup_steps=30))
    sft: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2500, batch_size=16, lr=3e-3, warmup_steps=50, eval_every=250,
                                                                 ckpt_every=250, snapshot_every=250))
    rm: RMConfig = field(default_factory=RMConfig)
    rm_train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=300, batch_size=16, lr=1e-3, warmup_steps=20, weight_decay=0.0,
                                                                      eval_every=300, ckpt_every=100, snapshot_every=150))
    ppo: PPOConfig = field(default_factory=PPOConfig)
    rlhf: RLHFConfig = field(default_factory=lambda: RLHFConfig(init_step=1500))  # the final SFT policy leaves PPO no room


def preset(name: str) -> Config:
    """The defaults of one preset: `tiny` for tests (seconds), `cpu` for the demo, `gpu` for one H100."""
    if name == "tiny":
        return Config(
            preset=name,
            world=WorldConfig(n_docs=400),
            tokenizer=TokenizerConfig(vocab_size=1024, train_chars=250_000),
            model=ModelConfig(block_size=320, n_layer=2, n_head=2, n_embd=32),
            pretrain=TrainConfig(steps=60, batch_size=8, warmup_steps=10, eval_every=20, ckpt_every=20),
            sft=TrainConfig(steps=40, batch_size=8, lr=1e-3, warmup_steps=5, eval_every=20, ckpt_every=20, snapshot_every=10),
            rm=RMConfig(n_models=4, train_docs=200, summaries_per_doc=3, val_pairs=20, test_pairs=20, ood_pairs=20, probe_steps=50,
                        curriculum_steps=10, curriculum_docs=200),
            rm_train=TrainConfig(steps=10, batch_size=8, lr=1e-3, warmup_steps=2, weight_decay=0.0, eval_every=5, ckpt_every=5,
                                 snapshot_every=5),
            ppo=PPOConfig(iterations=6, batch_size=8, minibatch_size=4, epochs=2),
            rlhf=RLHFConfig(eval_every=3, eval_docs=8, test_docs=16, bon_docs=8, bon_n=8),
        )
    if name == "cpu":
        return Config(preset=name)
    if name == "gpu":
        return Config(
            preset=name,
            device="cuda",
            dtype="bfloat16",
            world=WorldConfig(n_docs=100_000),
            tokenizer=TokenizerConfig(vocab_size=4096, train_chars=4_000_000),
            model=ModelConfig(n_layer=8, n_head=8, n_embd=512),
            pretrain=TrainConfig(steps=3000, batch_size=64, lr=1e-3, warmup_steps=200, eval_every=500, ckpt_every=500, compile=True),
            sft=TrainConfig(steps=4000, batch_size=64, lr=1e-3, warmup_steps=200, eval_every=500, ckpt_every=500, snapshot_every=500,
                            compile=True),
            rm=RMConfig(n_models=10, train_docs=20_000, val_pairs=1000, test_pairs=1000, ood_pairs=1000, curriculum_docs=50_000),
            rm_train=TrainConfig(steps=600, batch_size=64, lr=1e-4, warmup_steps=50, weight_decay=0.0, eval_every=200, ckpt_every=200,
                                 snapshot_every=300, compile=True),
            ppo=PPOConfig(iterations=400, batch_size=128, minibatch_size=32, lr=5e-5),
            rlhf=RLHFConfig(eval_every=20, eval_docs=512, test_docs=1000, bon_docs=500),
        )
    raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")


def sections(cfg: Config):
    """(name, dataclass instance) for each nested section of the config."""
    return [(f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))]


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(d: dict) -> Config:
    """The config recorded in `d`; a field or section it lacks (added to warm-mini after the run began) takes its preset's value."""
    cfg = preset(d.get("preset", "cpu"))
    for k, v in d.items():
        if not isinstance(v, dict):
            setattr(cfg, k, v)
    for section_name, section in sections(cfg):
        if section_name in d:
            unknown = set(d[section_name]) - {f.name for f in dataclasses.fields(section)}
            if unknown:
                raise SystemExit(f"error: the recorded config sets {', '.join(f'{section_name}.{k}' for k in sorted(unknown))}, "
                                 f"which this version of warm-mini does not have; start a new --run-dir")
            setattr(cfg, section_name, dataclasses.replace(section, **d[section_name]))
    return cfg


def dumps(cfg: Config) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)
