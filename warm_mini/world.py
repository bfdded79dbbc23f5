"""The summarization world: documents with facts, reference summaries, the oracle and the labeler.

Each document reports one main event (who, in what role, did what to how many of which objects, where,
when) among 2 to 6 distractor sentences about other people, places and numbers. A good summary is one
sentence that copies the main event's facts, and only those, into one of a few summary templates.

The oracle scores a summary against the document's facts (not its text) and is the control reward of
the whole demo, so it is built to be hard to game: a summary earns points only for the main event's
facts, and loses points for other facts, invented ones, words outside the summary grammar, repetition,
rambling and a missing end marker. The labeler turns two oracle scores into a noisy preference.

Everything is seeded with `random.Random`, which gives the same numbers in every process (no use of
`hash()` or of set order), so a seed names one world.
"""

import random
import re
import string
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from warm_mini.words import (ACTIONS, DISTRACTOR_TEMPLATES, FIRST_NAMES, MAIN_TEMPLATES, OBJECTS, PLACES, ROLES,  # noqa: F401
                             SUMMARY_TEMPLATES, SURNAMES, TIMES)

EOT = "<|endoftext|>"  # ends every summary (and separates pretraining texts)
SEP = "<|sep|>"  # separates a document from its summary

KEY_FACTS = ("name", "role", "action", "qty", "obj", "place", "time")

# ---------------------------------------------------------------------------------------------------
# Documents


@dataclass(frozen=True)
class Fact:
    """The facts of one event or one sentence; fields a sentence does not mention are None."""

    name: str | None = None  # full name, "Anna Berg"
    role: str | None = None
    action: str | None = None
    qty: int | None = None
    obj: str | None = None
    place: str | None = None
    time: str | None = None

    @property
    def surname(self) -> str:
        return self.name.split()[-1]


@dataclass
class Document:
    """One generated document and the facts behind it."""

    text: str
    facts: Fact  # the main event, every field set
    distractors: list[Fact]  # one per distractor sentence
    summary_template: int  # which of SUMMARY_TEMPLATES `reference` uses
    _index: dict | None = field(default=None, init=False, repr=False, compare=False)  # the oracle's lookup, built on first use

    @property
    def reference(self) -> str:
        """The reference summary, without the end marker."""
        return reference_summary(self)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _fill(template: str, fact: Fact, main: Fact | None = None) -> str:
    """One sentence from a template: placeholders filled in, first letter capitalised."""
    values = {
        "name": fact.name, "role": fact.role, "action": fact.action, "qty": fact.qty, "obj": fact.obj,
        "place": fact.place, "time": fact.time, "count": fact.qty, "years": fact.qty,
        "surname": fact.surname if fact.name else None,
        "a_role": f"{_article(fact.role)} {fact.role}" if fact.role else None,
    }
    if main is not None:
        values |= {"main_surname": main.surname, "main_role": main.role, "main_obj": main.obj, "main_place": main.place}
    text = template.format(**values)
    return text[0].upper() + text[1:]


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _fields(template: str) -> set[str]:
    """The fact fields a template's placeholders need ({count} and {years} are quantities too)."""
    needs = {"surname": "name", "a_role": "role", "count": "qty", "years": "qty"}
    return {needs.get(p, p) for p in _placeholders(template) if not p.startswith("main_")}


for _lead, _follow in MAIN_TEMPLATES:
    assert "{name}" in _lead and _fields(_lead + _follow) == set(KEY_FACTS), f"{_lead!r} misses a fact"
for _t in SUMMARY_TEMPLATES:
    assert _fields(_t) == set(KEY_FACTS), f"{_t!r} misses a fact"
_POOLS = {"role": ROLES, "action": ACTIONS, "obj": OBJECTS, "place": PLACES, "time": TIMES}
_QUANTITIES = {"qty": range(2, 500), "count": range(600, 10_000), "years": range(2, 80)}
# (template, the fact fields it needs, the range of its quantity)
_DISTRACTORS = [(t, _fields(t), next((r for p, r in _QUANTITIES.items() if f"{{{p}}}" in t), None)) for t in DISTRACTOR_TEMPLATES]
_FULL_EVENT = [i for i, (_, fields, _) in enumerate(_DISTRACTORS) if fields == set(KEY_FACTS)]


class _Picker:
    """Draws fact values for one document, never the same value twice, so that every fact belongs to one event."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set = set()  # only tested for membership, so its order never matters

    def pick(self, pool):
        while True:
            value = self.rng.choice(pool)
            if value not in self.used:
                self.used.add(value)
                return value

    def fact(self, fields: set[str], quantities: range = _QUANTITIES["qty"]) -> Fact:
        values = {}
        for f in KEY_FACTS:  # a fixed order (not the set's), so the same seed draws the same values
            if f not in fields:
                continue
            if f == "name":  # first names and surnames are unique in a document, so a surname alone names one person
                values[f] = f"{self.pick(FIRST_NAMES)} {self.pick(SURNAMES)}"
            else:
                values[f] = self.pick(quantities if f == "qty" else _POOLS[f])
        return Fact(**values)


def _document(rng: random.Random) -> Document:
    picker = _Picker(rng)
    main = picker.fact(KEY_FACTS)
    lead, follow = rng.choice(MAIN_TEMPLATES)
    sentences = [_fill(lead, main)] + ([_fill(follow, main)] if follow else [])
    # One distractor always reports a whole other event, so every kind of fact has a competitor.
    n = rng.randint(2, 6)
    full = rng.choice(_FULL_EVENT)
    chosen = [full] + rng.sample([i for i in range(len(_DISTRACTORS)) if i != full], n - 1)
    rng.shuffle(chosen)
    distractors = []
    for i in chosen:
        template, fields, quantities = _DISTRACTORS[i]
        fact = picker.fact(fields, quantities)
        sentences.append(_fill(template, fact, main))
        distractors.append(fact)
    return Document(" ".join(sentences), main, distractors, rng.randrange(len(SUMMARY_TEMPLATES)))


def generate_documents(n: int, seed: int) -> list[Document]:
    """`n` documents; document i depends only on (seed, i), so a longer list extends a shorter one."""
    return [_document(random.Random(f"warm-mini:{seed}:{i}")) for i in range(n)]


def reference_summary(doc: Document, rng: random.Random | None = None, template: int | None = None) -> str:
    """A one-sentence summary of the main event, without the end marker (a finished summary is this + EOT).

    The template is `template` if given, else a random one drawn from `rng`, else the document's own.
    """
    if template is None:
        template = rng.randrange(len(SUMMARY_TEMPLATES)) if rng is not None else doc.summary_template
    return _fill(SUMMARY_TEMPLATES[template], doc.facts)


def _invented_value(doc: Document, kind: str, rng: random.Random):
    """A value of `kind` (a key fact other than the name, or "first" for a first name) that `doc` never mentions."""
    pool = {"first": FIRST_NAMES, "qty": _QUANTITIES["qty"], **_POOLS}[kind]
    text = doc.text.lower()
    while True:  # a substring test may refuse an absent value ("12" in "120"), never accepts one that is there
        value = rng.choice(pool)
        if str(value).lower() not in text:
            return value


def edited_summary(doc: Document, kind: str, rng: random.Random, template: int | None = None) -> str:
    """The reference summary (without EOT) with the main event's `kind` fact replaced by one the document never mentions.

    A name keeps the actor's surname and changes the first name: the SFT policy's most common slip. These near misses
    differ from the reference in one fact only, so a reward model can order them only by checking that fact.
    """
    value = f"{_invented_value(doc, 'first', rng)} {doc.facts.surname}" if kind == "name" else _invented_value(doc, kind, rng)
    return reference_summary(replace(doc, facts=replace(doc.facts, **{kind: value})), template=template)


def fluency_edits(summary: str, rng: random.Random) -> list[str]:
    """Two edits of a summary (without EOT) that keep its words and lose fluency: a two-word span said twice, and two
    adjacent words swapped (which may also break a fact's phrase). One-fact edits never show a reward model that
    repeating words is worse; these do."""
    words = summary.split(" ")
    i = rng.randrange(len(words) - 2)
    repeated = words[: i + 2] + words[i : i + 2] + words[i + 2 :]
    j = rng.randrange(len(words) - 2)
    swapped = words[:j] + [words[j + 1], words[j]] + words[j + 2 :]
    return [" ".join(repeated), " ".join(swapped)]


def world_text(docs: list[Document]) -> str:
    """Pretraining text: each document, SEP, its reference summary and EOT, one after another."""
    return "".join(doc.text + SEP + doc.reference + EOT for doc in docs)


# ---------------------------------------------------------------------------------------------------
# The oracle. A summary is read as a sequence of units: a lexicon phrase (longest match first), a
# number, a word of the summary templates, or an unknown word.

_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")  # a run of letters and digits, or any other single character
_FACT_CLASSES = {"PERSON", "ROLE", "ACTION", "NUM", "OBJ", "PLACE", "TIME"}
_PLACEHOLDER_CLASS = {"name": ["PERSON"], "role": ["ROLE"], "a_role": ["a", "ROLE"], "action": ["ACTION"],
                      "qty": ["NUM"], "obj": ["OBJ"], "place": ["PLACE"], "time": ["TIME"]}

# phrase (lower case) -> class; the words of the summary templates are their own class
_LEXICON: dict[str, str] = {}
for _cls, _phrases in [("PERSON", FIRST_NAMES + SURNAMES + [f"{f} {s}" for f in FIRST_NAMES for s in SURNAMES]),
                       ("ROLE", ROLES), ("ACTION", ACTIONS), ("OBJ", OBJECTS), ("PLACE", PLACES), ("TIME", TIMES)]:
    for _p in _phrases:
        assert _p.lower() not in _LEXICON, f"{_p!r} is in two lexicon lists"
        _LEXICON[_p.lower()] = _cls


def _template_words(template: str) -> list[str]:
    """A template's classes in order, e.g. ["PERSON", ",", "a", "ROLE", ...]."""
    out = []
    for literal, name, _, _ in string.Formatter().parse(template):
        out += _TOKEN.findall(literal.lower())
        out += _PLACEHOLDER_CLASS[name] if name else []
    return out


for _word in {w for t in SUMMARY_TEMPLATES for w in _template_words(t)} - _FACT_CLASSES:
    assert _word not in _LEXICON, f"summary word {_word!r} is also a lexicon phrase"
    _LEXICON[_word] = _word
_LEXICON["an"] = "a"  # the article is not checked against the role's first letter

# first word -> lengths (in words) of the phrases starting with it, longest first
_SPANS: dict[str, tuple[int, ...]] = {}
for _p in _LEXICON:
    _words = _p.split()
    _SPANS[_words[0]] = tuple(sorted(set(_SPANS.get(_words[0], ())) | {len(_words)}, reverse=True))

# The summary grammar: the class bigrams that occur in the summary templates, with <s> and </s> at the ends.
_GRAMMAR = {pair for t in SUMMARY_TEMPLATES for seq in [["<s>", *_template_words(t), "</s>"]] for pair in zip(seq, seq[1:])}


def _units(text: str) -> tuple[list[str], list[str], list[str]]:
    """Reads `text` as units, matching the longest lexicon phrase first.

    Returns its words, the class of each unit between <s> and </s>, and the phrases of its fact units.
    """
    words = _TOKEN.findall(text.lower())
    classes, facts = ["<s>"], []
    lexicon, spans = _LEXICON, _SPANS  # local names: this loop is the oracle's hot path
    i, n = 0, len(words)
    while i < n:
        word = words[i]
        for k in spans.get(word, ()):
            phrase = " ".join(words[i : i + k]) if k > 1 else word
            cls = lexicon.get(phrase)
            if cls is not None:
                break
        else:
            k, phrase, cls = 1, word, "NUM" if word.isdigit() else "UNK"
        classes.append(cls)
        if cls in _FACT_CLASSES:
            facts.append(phrase)
        i += k
    classes.append("</s>")
    return words, classes, facts


# The doc text outside the placeholders must name no lexicon entry: such a phrase would be in the
# document without being one of its facts, and a summary copying it would be scored as inventing it.
for _t in [t for pair in MAIN_TEMPLATES for t in pair] + DISTRACTOR_TEMPLATES:
    _literals = " ".join(literal for literal, _, _, _ in string.Formatter().parse(_t))
    _bad = _units(_literals)[2]
    assert not _bad, f"template {_t!r} names {_bad}"

# Coverage weights of the main event's facts (sum 1): who did what to what weighs most.
WEIGHTS = {"name": 0.25, "action": 0.2, "obj": 0.2, "qty": 0.1, "place": 0.1, "role": 0.08, "time": 0.07}
PARTIAL_NAME = 0.5  # share of the name's weight earned by the surname or first name alone
DISTRACTOR_PENALTY = 0.25  # per mention of a fact of another event
HALLUCINATION_PENALTY = 0.3  # per name, role, action, object, place, time or number not in the document
WORD_BUDGET = 30
LENGTH_PENALTY = 0.05  # per word past the budget
REPEAT_PENALTY = 0.2  # per repeated word bigram and per repeated mention of a main fact
DISFLUENCY_PENALTY = 0.15  # per class bigram that no summary template contains
NO_END_PENALTY = 0.5  # the summary never wrote EOT
FLOOR = -1.0

_DISTRACTOR = ("distractor", 0.0)


def _index(doc: Document) -> dict[str, tuple[str, float]]:
    """phrase -> (main-event field, credit) for the main event's facts, or _DISTRACTOR; cached on the doc."""
    if doc._index is None:
        index = {}
        for fact in doc.distractors:
            for f in KEY_FACTS:
                if getattr(fact, f) is not None:
                    index[str(getattr(fact, f)).lower()] = _DISTRACTOR
            if fact.name:
                for part in fact.name.lower().split():
                    index[part] = _DISTRACTOR
        main = doc.facts  # written last: a distractor sentence may repeat a main fact (its place, its object)
        for part in main.name.lower().split():
            index[part] = ("name", PARTIAL_NAME)
        for f in KEY_FACTS:
            index[str(getattr(main, f)).lower()] = (f, 1.0)
        doc._index = index
    return doc._index


def _check_facts(doc: Document, facts: list[str]) -> tuple[dict[str, float], int, int, int]:
    """(credit per main-event field, distractor mentions, hallucinations, repeated main facts) of a summary's facts."""
    index = _index(doc)
    credit: dict[str, float] = {}  # main-event field -> best credit earned
    distractors = hallucinations = repeats = 0
    for phrase in facts:
        hit = index.get(phrase)
        if hit is None:
            hallucinations += 1
        elif hit is _DISTRACTOR:
            distractors += 1
        else:
            f, c = hit
            if f in credit:
                repeats += 1
                c = max(c, credit[f])
            credit[f] = c
    return credit, distractors, hallucinations, repeats


def fact_credit(doc: Document, summary: str) -> dict[str, float]:
    """The credit `summary` earns for each main-event field it gets right (1, or PARTIAL_NAME for half a name)."""
    return _check_facts(doc, _units(summary.partition(EOT)[0])[2])[0]


def invented_facts(doc: Document, summary: str) -> list[str]:
    """The class (PERSON, ROLE, ACTION, NUM, OBJ, PLACE, TIME) of each fact in `summary` that `doc` never mentions."""
    index = _index(doc)
    return [_LEXICON.get(phrase, "NUM") for phrase in _units(summary.partition(EOT)[0])[2] if phrase not in index]


def score_components(doc: Document, summary: str) -> dict[str, float]:
    """The oracle's score of `summary` (as generated, EOT included) split into named parts; `score` adds them.

    Text after the first EOT is ignored: generation stops there, so it is never part of the summary.
    """
    text, end, _ = summary.partition(EOT)
    words, classes, facts = _units(text)
    credit, distractors, hallucinations, repeats = _check_facts(doc, facts)
    repeats += max(0, len(words) - 1) - len(set(zip(words, words[1:])))  # repeated word bigrams
    disfluent = len([pair for pair in zip(classes, classes[1:]) if pair not in _GRAMMAR])
    n_words = sum(map(str.isalnum, words))
    return {
        "coverage": sum(WEIGHTS[f] * c for f, c in credit.items()),
        "distractor": -DISTRACTOR_PENALTY * distractors,
        "hallucination": -HALLUCINATION_PENALTY * hallucinations,
        "length": -LENGTH_PENALTY * max(0, n_words - WORD_BUDGET),
        "repetition": -REPEAT_PENALTY * repeats,
        "disfluency": -DISFLUENCY_PENALTY * disfluent,
        "end": 0.0 if end else -NO_END_PENALTY,
    }


def quality(doc: Document, summary: str) -> float:
    """The oracle's parts added up, unclipped (at most 1 up to rounding): what the labeler compares, so that it still orders
    two bad summaries that `score` would tie at the floor."""
    return sum(score_components(doc, summary).values())


def score(doc: Document, summary: str) -> float:
    """The oracle (the control reward): 1 for a perfect summary (the reference + EOT), down to FLOOR for a bad one."""
    return min(1.0, max(FLOOR, quality(doc, summary)))  # min: the weights' float sum can exceed 1 by 2e-16


# ---------------------------------------------------------------------------------------------------
# The labeler


class Labels(NamedTuple):
    label: np.ndarray  # (N,) bool, True when summary 1 is preferred: the label training sees
    clean: np.ndarray  # (N,) bool, the label before corruption
    flipped: np.ndarray  # (N,) bool, True where label != clean
    p_first: np.ndarray  # (N,) float, the labeler's probability of preferring summary 1


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the same function as 1 / (1 + e^-x), without overflow


class Labeler:
    """Compares two summaries by their oracle scores, with Bradley-Terry noise and optional corruption.

    P(prefer summary 1) = sigmoid((s1 - s2) / tau); tau = 0 always picks the higher score (ties: a coin).
    Then each label is swapped with probability flip_frac (the paper corrupts 25% of the training labels),
    keeping the clean label and the flip flag. Labels depend on the seed and on the calls made so far.
    """

    def __init__(self, tau: float, flip_frac: float = 0.0, seed: int = 0):
        assert tau >= 0 and 0 <= flip_frac <= 1
        self.tau, self.flip_frac = tau, flip_frac
        self.rng = np.random.default_rng(seed)

    def p_first(self, s1, s2) -> np.ndarray:
        diff = np.asarray(s1, dtype=float) - np.asarray(s2, dtype=float)
        if self.tau == 0:
            return 0.5 + 0.5 * np.sign(diff)
        return _sigmoid(diff / self.tau)

    def label(self, s1, s2) -> Labels:
        """Labels for the pairs (s1[i], s2[i]) of oracle scores."""
        p = self.p_first(s1, s2)
        clean = self.rng.random(p.shape) < p
        flipped = self.rng.random(p.shape) < self.flip_frac
        return Labels(clean ^ flipped, clean, flipped, p)

    def agreement(self, s1, s2) -> float:
        """Expected share of clean labels that pick the higher-scoring summary (ties count half).

        This is the best accuracy any reward model can reach against clean labels on these pairs.
        """
        p = self.p_first(s1, s2)
        return float(np.mean(np.maximum(p, 1 - p)))  # p > 1/2 exactly when summary 1 scores higher
