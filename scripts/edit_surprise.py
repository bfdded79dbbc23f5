"""Where the SFT policy notices a one-fact edit: at the edited tokens, or at the token after them?

A reward model reads one position, the last token, so a check it can learn cheaply is one whose verdict some
token of the summary already carries in its hidden state. The SFT policy's state at token t predicts token t+1,
so an invented fact shows twice in its log-likelihood: at the edited tokens themselves (their prediction, made
one position earlier, missed), and at the token after them, when predicting that token needs the fact to be
the document's (a first name whose surname must follow; the first digits of a number). The first is in no
hidden state at the edited position; the second is in the state of the edit's own last token.

For each key fact, on the first --docs documents of a split, the reference summary against the same summary
with that fact replaced by one the document never mentions (world.edited_summary, the same template): the mean
number of tokens that differ, and the mean drop in log pi_SFT at those tokens and at the token after them.

    python scripts/edit_surprise.py --run-dir runs/cpu
"""

import random
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from warm_mini import data, lm, model as gpt, world  # noqa: E402
from warm_mini import tokenizer as tok  # noqa: E402
from warm_pipeline import cli, sft_stage  # noqa: E402


def token_logprobs(policy, enc, doc: world.Document, summary: list[int]) -> torch.Tensor:
    """log pi(y_t | x, y_<t) of each summary token (N,)."""
    prompt = torch.tensor([data.prompt_ids(enc, doc)])
    response = torch.tensor([summary])
    return gpt.sequence_logprobs(policy, prompt, torch.ones_like(prompt), response, torch.ones_like(response))[0]


def edited_span(a: list[int], b: list[int]) -> tuple[int, int, int]:
    """(start, end in a, end in b) of the tokens where a and b differ, with their common prefix and suffix removed."""
    start = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    suffix = 0
    while suffix < min(len(a), len(b)) - start and a[-1 - suffix] == b[-1 - suffix]:
        suffix += 1
    return start, len(a) - suffix, len(b) - suffix


@torch.no_grad()
def main(argv=None):
    parser = cli.build_parser(__doc__)
    parser.add_argument("--docs", type=int, default=300, help="documents per key fact")
    parser.add_argument("--split", choices=("train", "val", "test"), default="val")
    args = parser.parse_args(argv)
    cfg, run_dir = cli.resolve(args)
    splits, enc = data.load_world(cfg), tok.load(sft_stage.tokenizer_path(run_dir))
    policy = lm.load_model(sft_stage.sft_snapshots(run_dir)[-1], cfg.device).eval()
    docs = getattr(splits, args.split)[: args.docs]
    eot = [enc.encode_single_token(world.EOT)]
    rng = random.Random(0)
    refs = [tok.encode(enc, doc.reference) + eot for doc in docs]  # in the document's own template, as its edits
    ref_logprobs = [token_logprobs(policy, enc, doc, ref) for doc, ref in zip(docs, refs)]
    print(f"{'fact':8s} {'tokens edited':>14s} {'drop at the edit':>17s} {'drop at the next token':>23s}")
    for kind in world.KEY_FACTS:
        width, at_edit, after = [], [], []
        for doc, ref, lp_ref in zip(docs, refs, ref_logprobs):
            edit = tok.encode(enc, world.edited_summary(doc, kind, rng, doc.summary_template)) + eot
            start, end_ref, end_edit = edited_span(ref, edit)
            lp_edit = token_logprobs(policy, enc, doc, edit)
            width.append(end_edit - start)
            at_edit.append((lp_ref[start:end_ref].sum() - lp_edit[start:end_edit].sum()).item())
            after.append((lp_ref[end_ref] - lp_edit[end_edit]).item())  # the first shared token after the edit
        print(f"{kind:8s} {statistics.fmean(width):14.2f} {statistics.fmean(at_edit):17.2f} {statistics.fmean(after):23.2f}")


if __name__ == "__main__":
    cli.run_script(main)
