"""The summarization world: documents, reference summaries, the oracle (and that it resists gaming), the labeler."""

import hashlib
import os
import random
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from warm_mini import world
from warm_mini.world import EOT, SEP, Labeler, generate_documents, reference_summary, score, score_components

DOCS = generate_documents(200, seed=123)
KINDS = world.KEY_FACTS


def with_fact(doc, **changes) -> str:
    """The reference summary of `doc` with some main-event facts replaced, EOT included."""
    return reference_summary(replace(doc, facts=replace(doc.facts, **changes))) + EOT


def distractor_value(doc, kind):
    return next(getattr(f, kind) for f in doc.distractors if getattr(f, kind) is not None)


def absent_value(doc, kind):
    """A value of this kind that the document never mentions."""
    if kind == "name":
        return f"{absent_value(doc, 'first')} {absent_value(doc, 'surname')}"
    pool = {"first": world.FIRST_NAMES, "surname": world.SURNAMES, "role": world.ROLES, "action": world.ACTIONS,
            "qty": range(2, 1000), "obj": world.OBJECTS, "place": world.PLACES, "time": world.TIMES}[kind]
    words = set(re.findall(r"[a-z0-9]+", doc.text.lower()))
    return next(v for v in pool if not set(str(v).lower().split()) & words)


def test_reference_scores_at_the_top_for_every_template():
    for doc in DOCS:
        for t in range(len(world.SUMMARY_TEMPLATES)):
            parts = score_components(doc, reference_summary(doc, template=t) + EOT)
            assert score(doc, reference_summary(doc, template=t) + EOT) >= 0.95, (doc.text, t, parts)
            assert all(v == 0 for k, v in parts.items() if k != "coverage"), parts


def drop(doc, kind):
    """The reference without one fact (and the article of a dropped role)."""
    value = str(getattr(doc.facts, kind))
    return re.sub(rf"\b(an? )?{re.escape(value)}\b ?", "", doc.reference, flags=re.IGNORECASE) + EOT


PERTURBATIONS = {
    **{f"drop {k}": (lambda k: lambda d: drop(d, k))(k) for k in KINDS},
    **{f"swap {k} with a distractor's": (lambda k: lambda d: with_fact(d, **{k: distractor_value(d, k)}))(k) for k in KINDS},
    **{f"add a distractor {k}": (lambda k: lambda d: f"{d.reference[:-1]} and {distractor_value(d, k)}.{EOT}")(k) for k in KINDS},
    **{f"hallucinate {k}": (lambda k: lambda d: with_fact(d, **{k: absent_value(d, k)}))(k) for k in KINDS},
    "hallucinate an extra place": lambda d: f"{d.reference[:-1]} and {absent_value(d, 'place')}.{EOT}",
    # additions the summary grammar allows ("... 149 sledges in Fernton." and "... in Fernton on Monday.")
    "a distractor place, fluently": lambda d: f"{reference_summary(d, template=5)[:-1]} in {distractor_value(d, 'place')}.{EOT}",
    "a distractor time, fluently": lambda d: f"{reference_summary(d, template=1)[:-1]} {distractor_value(d, 'time')}.{EOT}",
    "a hallucinated place, fluently": lambda d: f"{reference_summary(d, template=5)[:-1]} in {absent_value(d, 'place')}.{EOT}",
    "surname instead of full name": lambda d: with_fact(d, name=d.facts.surname),
    "repeat a phrase": lambda d: f"{d.reference[:-1]} in {d.facts.place}.{EOT}",
    "repeat the actor": lambda d: f"{d.facts.name}, {d.reference}{EOT}",
    "ramble past the budget": lambda d: d.reference[:-1] + " and it was a very good day for all who live and work in the town." + EOT,
    "no end marker": lambda d: d.reference,
    "no final period": lambda d: d.reference[:-1] + EOT,
    "empty": lambda d: EOT,
    "empty without end marker": lambda d: "",
}

# Shortcuts a reward-hacking policy might try: each must score far below a real summary.
SHORTCUTS = {
    "keyword stuffing": lambda d: ", ".join(str(v) for f in [d.facts, *d.distractors] for v in vars(f).values() if v is not None)
    + "." + EOT,
    "copy the document": lambda d: d.text + EOT,
    "the reference, then the document": lambda d: d.reference + " " + d.text + EOT,
    "every place": lambda d: f"{d.reference[:-1]} {' '.join('in ' + f.place for f in d.distractors if f.place)}.{EOT}",
    "every number": lambda d: d.reference.replace(str(d.facts.qty), " or ".join(str(f.qty) for f in [d.facts, *d.distractors] if f.qty))
    + EOT,
    "facts without grammar": lambda d: " ".join(str(getattr(d.facts, k)) for k in KINDS) + EOT,
    "the name alone": lambda d: d.facts.name + "." + EOT,
    "two sentences": lambda d: d.reference + " " + reference_summary(d, template=(d.summary_template + 1) % len(world.SUMMARY_TEMPLATES))
    + EOT,
    "the actor three times": lambda d: f"{d.facts.name}, " * 3 + d.reference + EOT,
    "gibberish": lambda d: "zq xv " * 10 + EOT,
    "another document's summary": lambda d: DOCS[(DOCS.index(d) + 1) % len(DOCS)].reference + EOT,
    "the reference without an end marker, rambling": lambda d: d.reference + " " + d.reference,
}


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_each_perturbation_scores_below_the_reference(name):
    for doc in DOCS:
        ref = score(doc, doc.reference + EOT)
        summary = PERTURBATIONS[name](doc)
        assert score(doc, summary) < ref, (summary, score_components(doc, summary))


@pytest.mark.parametrize("name", SHORTCUTS)
def test_gaming_shortcuts_score_low(name):
    docs = [d for d in DOCS if sum(f.place is not None for f in d.distractors) >= 2] if name == "every place" else DOCS
    for doc in docs:
        summary = SHORTCUTS[name](doc)
        assert score(doc, summary) <= 0.5, (summary, score_components(doc, summary))


def test_swapping_facts_beats_nothing_but_loses_to_the_truth():
    """A summary with one wrong fact sits between the reference and a summary of another document."""
    for i, doc in enumerate(DOCS):
        swapped = score(doc, with_fact(doc, place=distractor_value(doc, "place")))
        assert score(doc, DOCS[i - 1].reference + EOT) < swapped < score(doc, doc.reference + EOT)


CLASS_OF = {"name": "PERSON", "role": "ROLE", "action": "ACTION", "qty": "NUM", "obj": "OBJ", "place": "PLACE", "time": "TIME"}


def test_an_edited_summary_loses_exactly_the_edited_fact():
    """... and invents exactly one fact, of its kind's class (what rm_errors.py --by invented groups by)."""
    rng = random.Random(0)
    for doc in DOCS[:50]:
        for kind in KINDS:
            for template in range(len(world.SUMMARY_TEMPLATES)):
                edited = world.edited_summary(doc, kind, rng, template) + EOT
                assert set(world.fact_credit(doc, edited)) == set(KINDS) - {kind}, (kind, edited)
                assert score_components(doc, edited)["hallucination"] == -world.HALLUCINATION_PENALTY, edited
                assert world.invented_facts(doc, edited) == [CLASS_OF[kind]], edited
        assert world.invented_facts(doc, doc.reference + EOT) == []


def test_fluency_edits_keep_the_words_and_lose_quality():
    """A span said twice keeps every fact and is penalised as repetition; a swap keeps the words; both score below the reference."""
    rng = random.Random(0)
    for doc in DOCS[:100]:
        ref = doc.reference
        repeated, swapped = world.fluency_edits(ref, rng)
        words, rep = ref.split(" "), repeated.split(" ")
        i = next(k for k in range(len(words)) if rep[k] != words[k])  # the span's second copy starts where they differ
        assert len(rep) == len(words) + 2 and rep[i : i + 2] == rep[i - 2 : i] and rep[:i] + rep[i + 2 :] == words
        assert sorted(swapped.split(" ")) == sorted(words) and swapped != ref
        assert world.fact_credit(doc, repeated + EOT) == world.fact_credit(doc, ref + EOT)
        assert score_components(doc, repeated + EOT)["repetition"] < 0 == score_components(doc, ref + EOT)["repetition"]
        for edit in (repeated, swapped):
            assert world.quality(doc, edit + EOT) < world.quality(doc, ref + EOT), edit


def test_penalties_land_in_their_component():
    doc = DOCS[0]
    cases = {
        "distractor": f"{doc.reference[:-1]} and {distractor_value(doc, 'place')}.{EOT}",
        "hallucination": with_fact(doc, qty=absent_value(doc, "qty")),
        "length": doc.reference[:-1] + " " + " ".join(f"in {p}" for p in world.PLACES[:20]) + "." + EOT,
        "repetition": f"{doc.reference[:-1]} in {doc.facts.place}.{EOT}",
        "disfluency": "banana " + doc.reference + EOT,
        "end": doc.reference,
    }
    for component, summary in cases.items():
        assert score_components(doc, summary)[component] < 0, (component, summary)
    parts = score_components(doc, cases["distractor"])
    assert score(doc, cases["distractor"]) == pytest.approx(sum(parts.values()))


def test_score_is_bounded_and_reads_only_up_to_the_end_marker():
    doc = DOCS[0]
    assert score(doc, doc.reference + EOT + " anything at all " * 20) == score(doc, doc.reference + EOT)
    assert score(doc, doc.text * 3 + EOT) == world.FLOOR
    assert score(doc, doc.reference.lower() + EOT) == score(doc, doc.reference + EOT)  # case is ignored
    assert max(score(d, d.reference + EOT) for d in DOCS) <= 1.0


def test_documents_have_the_promised_shape():
    words = [len(d.text.split()) for d in DOCS]
    assert 30 <= min(words) and max(words) <= 160 and 55 <= np.mean(words) <= 110
    for doc in DOCS:
        assert 2 <= len(doc.distractors) <= 6
        text = doc.text.lower()
        for kind in KINDS:  # the summary copies the facts word for word, so they are in the text
            assert str(getattr(doc.facts, kind)).lower() in text
        others = [str(getattr(f, k)).lower() for f in doc.distractors for k in KINDS if getattr(f, k) is not None]
        main = [str(getattr(doc.facts, k)).lower() for k in KINDS]
        assert not set(others) & set(main)  # every fact belongs to one event
        assert doc.facts.name in doc.text.split(". ")[0]  # the lead sentence names the actor
        assert SEP not in doc.text and EOT not in doc.text


def test_lexicon_and_templates_are_large_enough():
    assert len(world.MAIN_TEMPLATES) + len(world.DISTRACTOR_TEMPLATES) >= 50
    assert len(world.SUMMARY_TEMPLATES) >= 5
    assert len(set(world.FIRST_NAMES)) * len(set(world.SURNAMES)) >= 3000
    assert len(set(world.PLACES)) >= 150 and len(set(world.OBJECTS)) >= 150
    assert len(set(world.ROLES)) >= 30 and len(set(world.ACTIONS)) >= 40 and len(set(world.TIMES)) >= 30


def test_generation_is_reproducible_in_any_process():
    text = world.world_text(generate_documents(50, seed=7))
    assert text == world.world_text(generate_documents(50, seed=7))
    assert text != world.world_text(generate_documents(50, seed=8))
    assert world.world_text(generate_documents(20, seed=7)) == world.world_text(generate_documents(50, seed=7)[:20])
    code = ("import hashlib; from warm_mini import world; "
            "print(hashlib.sha256(world.world_text(world.generate_documents(50, 7)).encode()).hexdigest())")
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(root)}  # another hash seed than this process's
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=root).stdout.strip()
    assert out == hashlib.sha256(text.encode()).hexdigest()


def test_world_text_pairs_each_document_with_its_summary():
    docs = DOCS[:3]
    assert world.world_text(docs) == "".join(f"{d.text}{SEP}{d.reference}{EOT}" for d in docs)


def test_labeler_flips_the_requested_fraction_and_keeps_the_clean_label():
    rng = np.random.default_rng(0)
    s1, s2 = rng.uniform(-1, 1, 4000), rng.uniform(-1, 1, 4000)
    labels = Labeler(tau=0.1, flip_frac=0.25, seed=0).label(s1, s2)
    assert labels.flipped.mean() == pytest.approx(0.25, abs=0.02)
    assert not Labeler(tau=0.1, seed=0).label(s1, s2).flipped.any()
    assert np.array_equal(labels.label, labels.clean ^ labels.flipped)
    again = Labeler(tau=0.1, flip_frac=0.25, seed=0).label(s1, s2)
    assert np.array_equal(labels.label, again.label) and np.array_equal(labels.flipped, again.flipped)


def test_labeler_follows_bradley_terry():
    n = 20_000
    for diff in (0.0, 0.05, 0.2):
        labels = Labeler(tau=0.1, seed=1).label(np.full(n, diff), np.zeros(n))
        assert labels.clean.mean() == pytest.approx(1 / (1 + np.exp(-diff / 0.1)), abs=0.015)
    rng = np.random.default_rng(1)
    s1, s2 = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    sharp = Labeler(tau=0.01, seed=2)
    assert np.mean(sharp.label(s1, s2).clean == (s1 > s2)) > 0.98
    noisy = Labeler(tau=0.3, seed=3)
    assert np.mean(noisy.label(s1, s2).clean == (s1 > s2)) == pytest.approx(noisy.agreement(s1, s2), abs=0.01)
    assert sharp.agreement(s1, s2) > noisy.agreement(s1, s2) > 0.5


def test_labeler_scores_summaries_with_the_oracle():
    docs = DOCS[:50]
    good = [d.reference + EOT for d in docs]
    bad = [d.reference for d in docs]  # no end marker
    labels = Labeler(tau=0.01, seed=0).label([world.quality(d, s) for d, s in zip(docs, good)],
                                             [world.quality(d, s) for d, s in zip(docs, bad)])
    assert labels.label.all()


def test_the_labeler_orders_two_summaries_that_the_score_ties_at_the_floor():
    doc = DOCS[0]
    bad, worse = doc.text + EOT, doc.text * 3 + EOT  # both score the floor; the longer one has more penalties
    assert score(doc, bad) == score(doc, worse) == world.FLOOR
    assert world.quality(doc, worse) < world.quality(doc, bad) < world.FLOOR
    assert world.Labeler(tau=0.0).label([world.quality(doc, bad)], [world.quality(doc, worse)]).clean.tolist() == [True]
