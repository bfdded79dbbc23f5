"""Stage 1 of warm-mini: world -> tokenizer -> pretraining -> SFT (reward models come next).

Every stage writes into the run directory and is skipped when it has finished, so a killed run
resumes where it stopped. Data-parallel: torchrun --nproc_per_node=N train_rm.py ...
"""

import json

from warm_mini import checkpoint, config, data, lm, tokenizer, train


def main(argv=None):
    parser = config.build_parser(__doc__)
    args = parser.parse_args(argv)
    cfg, run_dir = config.resolve(args)
    cfg.device = train.init_distributed(cfg.device)
    rank, _ = train.dist_info()
    say = print if rank == 0 else (lambda *a, **k: None)

    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.record_config(run_dir, cfg)
    train.barrier()
    say(f"run directory: {run_dir} (preset {cfg.preset}, seed {cfg.seed}, device {cfg.device})")

    splits = data.load_world(cfg)
    say(f"world: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test documents")
    if rank == 0:
        enc = data.load_or_train_tokenizer(run_dir, cfg, splits)
    train.barrier()
    if rank != 0:
        enc = tokenizer.load(data.tokenizer_path(run_dir))  # the file rank 0 wrote
    say(f"tokenizer: {enc.n_vocab} tokens in {data.tokenizer_path(run_dir)}")

    lm.pretrain(run_dir, cfg, splits, enc)
    model = lm.sft(run_dir, cfg, splits, enc)

    if rank == 0:
        report_path = run_dir / "sft" / "quality.json"
        if not report_path.exists():
            quality = lm.quality_report(model.to(cfg.device), enc, splits.test, cfg.seed, cfg.device)
            checkpoint.atomic_write_text(report_path, json.dumps(quality) + "\n")
        quality = json.loads(report_path.read_text())
        say(f"SFT on {len(splits.test)} test documents: oracle score greedy {quality['greedy']:.3f}, "
            f"sampled (T=1) {quality['sampled']:.3f}, reference {quality['reference']:.3f} "
            f"(greedy / reference = {quality['greedy_over_reference']:.0%})")
        say("oracle scores of T=1 samples:\n" + lm.histogram(quality["sampled_scores"]))


if __name__ == "__main__":
    main()
