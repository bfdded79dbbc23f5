"""warm_pipeline: a run of warm_mini, stage by stage, in a run directory, from the command line.

warm_mini/ holds the method and knows no run directory's layout; each module here decides, for one stage,
what to load, what to train and where to save it, and skips what has finished, so a killed run resumes.

cli.py          the flags every script shares, the rules a setting must meet, the recorded config.json
sft_stage.py    the run's tokenizer, pretraining and SFT (train_rm.py), the policy RL starts from (rlhf.py)
pairs_stage.py  the preference pairs of each split, sampled from the run's policies (train_rm.py)
rm_stage.py     the shared starts and the M reward models (train_rm.py); the reward sources read from them (rlhf.py)
rl_stage.py     one PPO run against one reward source, evaluated on held-out documents (rlhf.py)

Layout of a run directory (e.g. runs/cpu/):
    config.json          the resolved configuration; a later run must agree with it to resume
                         (the documents are not stored: the seed regenerates them)
    tokenizer.tiktoken   our BPE in tiktoken's text format
    pretrain/ sft/ prefs/ rm/ warm/ rlhf/      one folder per stage
    metrics/*.jsonl      one JSON line per logged step
    figures/*.png, report.md
"""
