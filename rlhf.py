"""Stage 3 of warm-mini: PPO against a single RM, ENS and WARM; Best-of-N; win rates; report.md.

For each reward source (--reward, default: the best single RM, ENS and WARM of all M reward models) and
each KL coefficient (--rlhf.kl_coefs), PPO fine-tunes the SFT policy (warm_pipeline/rl_stage.py) and logs the
control reward (the oracle) it never trains on. Then Best-of-N on SFT samples with every proxy (Fig. 6),
win rates judged by the oracle at equal steps, at each run's best checkpoint and at a fixed KL (Fig. 9),
and report.md with every table and figure. Finished PPO runs are skipped; an interrupted one resumes.
Under torchrun --nproc_per_node=N rlhf.py ..., the PPO runs go N at a time, one per process (rank r takes
runs r, r + N, ...), and rank 0 then does the rest.
"""

from warm_eval import policies, report
from warm_mini import checkpoint, data, reward, tokenizer, train
from warm_pipeline import cli, rl_stage, rm_stage, sft_stage

# the order runs are compared in: WARM against everything after it, and so on
KIND_ORDER = ("warm", "ens", "oracle", "rm")


def main(argv=None):
    parser = cli.build_parser(__doc__)
    parser.add_argument("--reward", default=None,
                        help="reward sources, comma separated: rm:I, rm:best, ens:M, warm:M, oracle (sets --rlhf.rewards)")
    parser.add_argument("--no-bon", action="store_true", help="skip Best-of-N")
    args = parser.parse_args(argv)
    cfg, run_dir = cli.resolve(args)
    cfg.device = train.init_distributed(cfg.device)
    rank, n_procs = train.dist_info()
    say = print if rank == 0 else (lambda *a, **k: None)
    if args.reward is not None:
        cfg.rlhf.rewards = args.reward
    if not (run_dir / "sft" / "model.pt").exists() or len(rm_stage.ranked_reward_models(run_dir)) < cfg.rm.n_models:
        raise SystemExit(f"error: no finished reward models in {run_dir}; "
                         "run train_rm.py and merge.py with the same --preset/--run-dir first")
    sft_stage.rl_init(run_dir, cfg.rlhf.init_step)  # an SFT snapshot that exists, before any work
    if rank == 0:
        cli.record_config(run_dir, cfg)
    train.barrier()
    splits = data.load_world(cfg)
    enc = tokenizer.load(sft_stage.tokenizer_path(run_dir))

    sources = rl_stage.sources(cfg, run_dir)
    for source in sources:  # fail now, not after an hour of PPO, on a source that cannot be loaded
        try:
            rm_stage.load_reward_source(source, run_dir, "cpu", enc, reward.doc_of_prompt(enc, splits.train[:1]))
        except (ValueError, FileNotFoundError) as e:
            raise SystemExit(f"error: {e}")
    sources.sort(key=lambda s: KIND_ORDER.index(s.partition(":")[0]))
    kl_coefs = rl_stage.kl_coefs(cfg)
    say(f"run directory: {run_dir}; PPO against {', '.join(sources)} at KL coefficient(s) {', '.join(f'{k:g}' for k in kl_coefs)}")

    jobs = [(source, kl_coef) for kl_coef in kl_coefs for source in sources]
    for source, kl_coef in jobs[rank::n_procs]:
        rl_stage.train_policy(run_dir, cfg, source, kl_coef, splits, enc)
    train.barrier()
    if rank:
        return
    runs = {}
    for source, kl_coef in jobs:
        out = rl_stage.ppo_dir(run_dir, cfg, source, kl_coef)  # finished, by this process or another
        name = rl_stage.label(source) + (f" β={kl_coef:g}" if len(kl_coefs) > 1 else "")
        runs[name] = {"train": checkpoint.read_jsonl(out / "train.jsonl"), "eval": checkpoint.read_jsonl(out / "eval.jsonl"),
                      "kl_coef": kl_coef, "dir": out}

    bon_rows, bon_seconds = [], {}
    if not args.no_bon:
        ms = sorted({int(s.split(":")[1]) for s in sources if s.startswith(("ens:", "warm:"))})
        bon_rows, bon_seconds = policies.best_of_n_experiment(run_dir, cfg, splits.test[: cfg.rlhf.bon_docs], enc, ms)

    # Win rates on test documents: every run against SFT, and each pair of runs at one KL coefficient, each
    # run judged at the iteration each of these picks from its folder.
    judge_at = {"final": lambda out: cfg.ppo.iterations,  # equal steps
                "best": rl_stage.best_iteration,  # its best held-out evaluation
                f"KL≤{cfg.rlhf.kl_budget:g}": lambda out: rl_stage.budget_iteration(out, cfg.rlhf.kl_budget)}  # equal KL
    judged = {"SFT": sft_stage.rl_init(run_dir, cfg.rlhf.init_step)}
    for name, r in runs.items():
        for when, iteration in judge_at.items():
            judged[f"{name} {when}"] = rl_stage.snapshot_path(r["dir"], iteration(r["dir"]))
    control = policies.judge_policies(judged, enc, splits.test[: cfg.rlhf.test_docs], cfg.ppo.temperature, cfg.seed,
                                      cfg.device, cfg.ppo.max_new_tokens)
    names = list(runs)
    matchups = [(f"{a} {when}", b if b == "SFT" else f"{b} {when}")
                for when in judge_at
                for i, a in enumerate(names)
                for b in ["SFT"] + [b for b in names[i + 1 :] if runs[b]["kl_coef"] == runs[a]["kl_coef"]]]
    win_rows = policies.win_rate_rows(control, matchups, seed=cfg.seed)

    path = report.write_report(run_dir, cfg, runs, bon_rows, bon_seconds, win_rows)
    for name, r in runs.items():
        print(f"{name}: {report.hacking_verdict(report.run_summary(name, r['train'], r['eval'], max(1, cfg.rlhf.eval_every)))}")
    print("win rates (oracle-judged, 95% bootstrap interval):")
    for w in win_rows:
        print(f"  {w['a']:>24s} vs {w['b']:<24s} {w['win_rate']:.3f} [{w['low']:.3f}, {w['high']:.3f}]")
    print(f"\nreport: {path}")


if __name__ == "__main__":
    cli.run_script(main)
