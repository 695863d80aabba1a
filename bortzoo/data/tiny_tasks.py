"""Tiny task datasets in the exact layout and schema of the Hub's `nyu-mll/glue`, `aps/super_glue` and `ehovy/race`.

Tests and tiny recipes fine-tune, evaluate and predict every task offline. They read these folders with the
same call as the real data: ``datasets.load_dataset("<root>/glue", "cola")`` behaves like
``datasets.load_dataset("nyu-mll/glue", "cola")`` (same configs, split names, columns, feature types and
class names), only smaller: train 384 rows, each validation split 96, each test split 48 (AX's too). RACE's
``all`` is ``middle`` followed by ``high``, split by split, as on the Hub, so it has twice the rows.
``<root>/super_glue`` stands in for `aps/super_glue` (configs boolq, cb, copa, multirc, record, rte, wic,
wsc.fixed, axb, axg; the features of its `super_glue` loading script, v1.0.3): the same sizes counted in rows
(MultiRC's answers), ReCoRD's smaller (192 / 48 / 24 queries, 2-3 per passage), AX-b and AX-g a `test` split
only. ReCoRD's `entity_spans` end exclusive (``passage[start:end] == text``), as that script writes them.

The fixtures test the pipeline, not language understanding. The text is the toy grammar of
`bortzoo.data.tiny_corpus` (the tiny tokenizer's words, most of them one token), and every label is a simple keyword
rule on the text (`CUES`), balanced over the classes, so that a tiny randomly initialised transformer learns
it in seconds and a fine-tune that works is told from one that does not: it scores clearly above chance.
Test splits hide their labels (-1) as GLUE's and SuperGLUE's do (ReCoRD's test answers are empty lists);
AX-b's and AX-g's labels, and RACE's test answers, are public, as on the Hub.

    python -m bortzoo.data.tiny_tasks [ROOT]  # regenerates bortzoo/assets/tiny-tasks

The same seed always gives the same tables (only `random.Random` draws the text).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Callable, Optional

from bortzoo.data.tiny_corpus import ADJECTIVES, CAPITALS, NOUNS, PLACES, TIMES, VERBS
from bortzoo.resources import ASSETS
from bortzoo.tasks.glue import GLUE_ID, GLUE_TASKS, NLI2, NLI3
from bortzoo.tasks.race import RACE_ID, RACE_LETTERS, RACE_TASKS
from bortzoo.tasks.spec import REGRESSION, TaskSpec
from bortzoo.tasks.superglue import BOOL, CB_LABELS, PLACEHOLDER, SUPERGLUE_ID, SUPERGLUE_TASKS

TINY_TASKS_DIR = ASSETS / "tiny-tasks"
FOLDERS = {GLUE_ID: "glue", SUPERGLUE_ID: "super_glue", RACE_ID: "race"}  # Hub dataset id -> folder under root
SIZES = {"train": 384, "validation": 96, "test": 48}  # rows per split, by the split's kind
HIDDEN = -1  # the label of a (Super)GLUE test row: hidden

# -- word pools (all from the toy grammar) ---------------------------------------------------------------
ANIMALS = ("cat", "dog", "bird", "fox", "horse")
PEOPLE = ("farmer", "teacher", "child", "student")
THINGS = tuple(n for n in dict.fromkeys(NOUNS) if n not in ANIMALS + PEOPLE + ("river", "city"))  # no place words
ALL_NOUNS = ANIMALS + PEOPLE + THINGS
COUNTRIES = tuple(sorted(CAPITALS))
CITIES = tuple(CAPITALS[c] for c in COUNTRIES)

POSITIVE, NEGATIVE = ("bright", "clever", "quick"), ("tired", "heavy", "old")  # sst2
SIMILAR_VERBS, OTHER_VERBS = ("sees", "watches", "finds"), ("builds", "paints", "carries")  # mrpc
STSB_LEVELS = ("distant", "heavy", "tired", "quiet", "clever", "bright")  # stsb: score = index (0..5)
NLI_TAILS = (("in the morning", "every day"), ("after the rain", "before dinner"), ("at night", "in winter"))
WNLI_TAILS = (("in the city", "under the bridge", "at the market"), ("near the river", "on the hill", "by the sea"))
BOOLQ_TRUE, BOOLQ_FALSE = SIMILAR_VERBS, OTHER_VERBS  # boolq: the question's verb
COPA_RIGHT = {"cause": ANIMALS, "effect": PEOPLE}  # copa: the right choice's subject, by the question
COPA_WRONG = {"cause": PEOPLE, "effect": ANIMALS}
PRONOUNS = ("he", "she")  # axg: the twins' pronouns
RTE_LEADS = ("", "", "he says", "she says", "they say")  # superglue-rte: how premises start


def _rest(pool, *excluded) -> tuple[str, ...]:
    taken = {word for group in excluded for word in group}
    return tuple(word for word in pool if word not in taken)


def _clause(rng: random.Random, adjectives=ADJECTIVES, nouns=ALL_NOUNS, verbs=VERBS, tails=PLACES + TIMES,
            **fixed) -> dict:
    """The parts of one toy-grammar clause, `fixed` ones as given: subject_adj, subject, verb, object_adj,
    object, tail."""
    parts = {"subject_adj": rng.choice(adjectives), "subject": rng.choice(nouns), "verb": rng.choice(verbs),
             "object_adj": rng.choice(adjectives), "object": rng.choice(nouns), "tail": rng.choice(tails)}
    parts.update(fixed)
    return parts


def _say(parts: dict, end: str = ".") -> str:
    p = parts
    words = ["the", p["subject_adj"], p["subject"], p["verb"], "a", p["object_adj"], p["object"], p["tail"]]
    return " ".join(w for w in words if w) + end


# -- GLUE: one generator per config; each gets the row's (balanced) label and returns its text columns ----
def _cola(rng, label, split):
    parts = _clause(rng)
    if label == 0:  # unacceptable: the verb's place holds a second noun, so the sentence has no verb
        parts["verb"] = rng.choice(ALL_NOUNS)
    return [_say(parts)]


def _sst2(rng, label, split):
    filler = _rest(ADJECTIVES, POSITIVE, NEGATIVE)
    parts = _clause(rng, adjectives=filler)
    parts[rng.choice(("subject_adj", "object_adj"))] = rng.choice(POSITIVE if label == 1 else NEGATIVE)
    return [_say(parts)]


def _mrpc(rng, label, split):
    parts = _clause(rng, verbs=_rest(VERBS, SIMILAR_VERBS, OTHER_VERBS))
    return [_say(parts), _say(dict(parts, verb=rng.choice(SIMILAR_VERBS if label == 1 else OTHER_VERBS)))]


def _stsb(rng, level, split):
    parts = _clause(rng, adjectives=_rest(ADJECTIVES, STSB_LEVELS))
    return [_say(parts), _say(dict(parts, subject_adj=STSB_LEVELS[level]))]


def _qqp(rng, label, split):
    p = _clause(rng, tails=TIMES)
    question = f"which {p['subject']} {p['verb']} a {p['object_adj']} {p['object']}"
    place = rng.choice(CITIES if label == 1 else COUNTRIES)
    return [f"{question} {p['tail']}?", f"{question} in {place}?"]


def _nli(rng, label, other_genre: bool):
    """The hypothesis's time phrase names the class. The premise is the clause the hypothesis rephrases, or
    in another genre (MNLI's mismatched splits, a quarter of AX) a fact about a capital."""
    tails = NLI_TAILS[label]
    if other_genre:
        country = rng.choice(COUNTRIES)
        premise, parts = f"the capital of {country} is {CAPITALS[country]}.", _clause(rng)
    else:
        parts = _clause(rng, tails=PLACES)
        premise = _say(parts)
    return [premise, _say(dict(parts, tail=rng.choice(tails)))]


def _mnli(rng, label, split):
    return _nli(rng, label, other_genre=split.endswith("mismatched"))


def _ax(rng, label, split):
    return _nli(rng, label, other_genre=rng.random() < 0.25)


def _qnli(rng, label, split):
    parts = _clause(rng, tails=PLACES if label == 0 else TIMES)  # 0 = entailment: the sentence says where
    return [f"where is the {parts['subject_adj']} {parts['subject']}?", _say(parts)]


def _rte(rng, label, split):
    premise = _clause(rng, nouns=THINGS)
    hypothesis = dict(premise, subject=rng.choice(ANIMALS if label == 0 else PEOPLE))
    return [_say(premise), _say(hypothesis)]


def _wnli(rng, label, split):
    parts = _clause(rng, tails=TIMES)
    return [_say(parts), _say(dict(parts, tail=rng.choice(WNLI_TAILS[label])))]


GLUE_MAKERS: dict[str, Callable] = {"cola": _cola, "sst2": _sst2, "mrpc": _mrpc, "stsb": _stsb, "qqp": _qqp,
                                    "mnli": _mnli, "qnli": _qnli, "rte": _rte, "wnli": _wnli, "ax": _ax}

# One line per config: the rule that decides each label (written into the dataset cards, too).
CUES = {
    "cola": "acceptable iff the sentence has a verb; an unacceptable one has a noun in the verb's place",
    "sst2": f"positive iff an adjective is one of {', '.join(POSITIVE)}; negative: one of {', '.join(NEGATIVE)}",
    "mrpc": f"sentence2 is sentence1 with another verb: equivalent iff it is one of {', '.join(SIMILAR_VERBS)}, "
            f"not_equivalent: one of {', '.join(OTHER_VERBS)}",
    "stsb": f"sentence2 is sentence1 with a new first adjective; the score is its index in "
            f"({', '.join(STSB_LEVELS)}) plus noise in [-0.25, 0.25], clipped to [0, 5]",
    "qqp": "duplicate iff question2 ends 'in <capital city>'; not_duplicate: 'in <country>'",
    "mnli": "the hypothesis's time phrase: " + "; ".join(
        f"{name} " + " / ".join(f"'{tail}'" for tail in tails) for name, tails in zip(NLI3, NLI_TAILS)),
    "qnli": "'where is ...?': entailment iff the sentence ends with a place phrase; not_entailment: a time phrase",
    "rte": "the hypothesis's subject: entailment iff an animal; not_entailment iff a person",
    "wnli": "sentence2's place phrase: entailment iff " + " / ".join(f"'{t}'" for t in WNLI_TAILS[1])
            + "; not_entailment: " + " / ".join(f"'{t}'" for t in WNLI_TAILS[0]),
    "ax": "as mnli (AX is predicted by the MNLI model); labels hidden",
    "race": "the question asks for an animal ('which animal ...?' or a cloze '_'); the right option is the only "
            "animal, the others are people or things",
    # SuperGLUE (aps/super_glue)
    "boolq": f"the question ('is it true that the <noun> <verb> a <noun>') restates a sentence of the passage: "
             f"True iff its verb is one of {', '.join(BOOLQ_TRUE)}; False: one of {', '.join(BOOLQ_FALSE)} (the "
             "passage's other sentences use other verbs)",
    "cb": "as mnli, by class name: the hypothesis's time phrase: " + "; ".join(
        f"{name} " + " / ".join(f"'{tail}'" for tail in NLI_TAILS[NLI3.index(name)]) for name in CB_LABELS),
    "copa": "the two choices differ only in their subject: for the question 'cause' the right choice's subject is "
            "an animal and the other's a person; for 'effect' the right one's is a person and the other's an animal "
            "(questions and labels balanced jointly, so the question must be read)",
    "multirc": "an answer is True iff it names an animal ('the dog'), False iff a person ('the farmer'); the "
               "paragraph names things only; each question has 2-4 answers, at least one of each",
    "record": "the right entity is the only one naming an animal (the other 2-5 are people or things); in a quarter "
              "of the passages the animal is named twice over ('dog' and '<adjective> dog'), both entities and both "
              "gold answers; the test split's answers are empty",
    "superglue-rte": "as GLUE's rte (the hypothesis's subject: entailment iff an animal; not_entailment iff a person); "
                     "some premises are reported: " + " / ".join(f"'{lead} ...'" for lead in RTE_LEADS if lead),
    "wic": "the target word (in both sentences, at the offsets) is set in time in sentence1 (a time phrase ends "
           "it): True iff sentence2 is set in time too; False: sentence2 ends with a place phrase",
    "wsc": "the text names a person and the candidate (span1, an animal or a thing), then 'because it is "
           "<adjective>' (span2 = 'it'): True iff the candidate is an animal",
    "axb": "as rte (AX-b is predicted by the model of SuperGLUE's rte, task superglue-rte); labels public",
    "axg": "as rte (predicted by its model), the premise reported as 'he says ...' or 'she says ...': rows 2k and "
           "2k+1 differ only in that pronoun and share the label; labels public",
}


def glue_features(spec: TaskSpec):
    """The Hub's features of a GLUE config: its text columns, `label`, `idx` (int32)."""
    from datasets import ClassLabel, Features, Value

    label = Value("float32") if spec.kind == REGRESSION else ClassLabel(names=list(spec.label_names))
    return Features({**{name: Value("string") for name in spec.text_fields}, "label": label,
                     spec.id_column: Value("int32")})


def glue_splits(spec: TaskSpec) -> list[str]:
    """The config's splits in Hub order (MNLI's `test` split is AX's data, not MNLI's)."""
    names = [spec.train] if spec.train else []
    names += [s.split for s in spec.validation] + [s.split for s in spec.test if s.task is None]
    return names


def split_size(split: str) -> int:
    return SIZES[split.split("_")[0]]


def _glue_rows(spec: TaskSpec, split: str, seed: int) -> dict[str, list]:
    rng = random.Random(f"{seed}:glue:{spec.config}:{split}")
    n = split_size(split)
    classes = len(STSB_LEVELS) if spec.kind == REGRESSION else len(spec.label_names)
    labels = [i % classes for i in range(n)]
    rng.shuffle(labels)
    make = GLUE_MAKERS[spec.config]
    hidden = split.startswith("test")
    columns: dict[str, list] = {name: [] for name in (*spec.text_fields, "label", spec.id_column)}
    for index, label in enumerate(labels):
        for name, text in zip(spec.text_fields, make(rng, label, split)):
            columns[name].append(text)
        if spec.kind == REGRESSION:
            value = float(HIDDEN) if hidden else round(min(5.0, max(0.0, label + rng.uniform(-0.25, 0.25))), 2)
        else:
            value = HIDDEN if hidden else label
        columns["label"].append(value)
        columns[spec.id_column].append(index)
    return columns


# -- RACE --------------------------------------------------------------------------------------------------
def race_features():
    """The Hub's features of `ehovy/race`: example_id, article, answer (a letter), question, options."""
    from datasets import Features, Sequence, Value

    return Features({"example_id": Value("string"), "article": Value("string"), "answer": Value("string"),
                     "question": Value("string"), "options": Sequence(Value("string"))})


RACE_LEVELS = {"middle": (3, 4), "high": (4, 5)}  # sentences per article


def _race_rows(level: str, split: str, seed: int, first_id: int) -> dict[str, list]:
    rng = random.Random(f"{seed}:race:{level}:{split}")
    n = split_size(split)
    answers = [i % len(RACE_LETTERS) for i in range(n)]
    rng.shuffle(answers)
    lo, hi = RACE_LEVELS[level]
    columns: dict[str, list] = {name: [] for name in race_features()}
    for index, answer in enumerate(answers):
        animal = rng.choice(ANIMALS)
        wrong = rng.sample(PEOPLE + THINGS, 3)
        key = _clause(rng, nouns=THINGS, subject=animal)
        others = [_say(_clause(rng, nouns=PEOPLE + THINGS)) for _ in range(rng.randint(lo, hi) - 1)]
        others.insert(rng.randrange(len(others) + 1), _say(key))
        if rng.random() < 0.5:  # a cloze question: the option fills the blank
            question = _say(dict(key, subject="_"))
        else:
            question = f"which animal {key['verb']} a {key['object_adj']} {key['object']}?"
        options = list(wrong)
        options.insert(answer, animal)
        columns["example_id"].append(f"{level}{first_id + index}.txt")
        columns["article"].append(" ".join(others))
        columns["answer"].append(RACE_LETTERS[answer])
        columns["question"].append(question)
        columns["options"].append(options)
    return columns


def race_splits(spec: TaskSpec) -> list[str]:
    return [spec.train] + [s.split for s in spec.validation] + [s.split for s in spec.test]


def _race_tables(seed: int) -> dict[str, dict[str, dict[str, list]]]:
    """{config: {split: columns}}; `all` is `middle` then `high`, split by split."""
    splits = race_splits(RACE_TASKS[0])
    tables: dict[str, dict[str, dict[str, list]]] = {}
    for level in RACE_LEVELS:
        first, tables[level] = 1, {}
        for split in splits:
            tables[level][split] = _race_rows(level, split, seed, first)
            first += split_size(split)
    tables["all"] = {split: {name: tables["middle"][split][name] + tables["high"][split][name]
                             for name in race_features()} for split in splits}
    return {spec.config: tables[spec.config] for spec in RACE_TASKS}


# -- SuperGLUE ---------------------------------------------------------------------------------------------
# The Hub's features of `aps/super_glue` (the `super_glue` loading script, v1.0.3), in its column order.
SUPERGLUE_CONFIGS = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc.fixed", "axb", "axg")
DIAGNOSTICS = ("axb", "axg")  # a `test` split only, with public labels
SUPERGLUE_TASK_OF = {spec.config: spec.name for spec in SUPERGLUE_TASKS}  # config -> task name (CUES' key)
RECORD_SIZES = {"train": 192, "validation": 48, "test": 24}  # ReCoRD queries per split (rows; passages are fewer)


def superglue_features(config: str):
    """The Hub's features of one `aps/super_glue` config (column order and dtypes as the Hub has them)."""
    from datasets import ClassLabel, Features, Sequence, Value

    string, int32 = Value("string"), Value("int32")
    nli2 = ClassLabel(names=list(NLI2))
    boolean = ClassLabel(names=list(BOOL))
    columns = {
        "boolq": {"question": string, "passage": string, "idx": int32, "label": boolean},
        "cb": {"premise": string, "hypothesis": string, "idx": int32, "label": ClassLabel(names=list(CB_LABELS))},
        "copa": {"premise": string, "choice1": string, "choice2": string, "question": string, "idx": int32,
                 "label": ClassLabel(names=["choice1", "choice2"])},
        "multirc": {"paragraph": string, "question": string, "answer": string,
                    "idx": {"paragraph": int32, "question": int32, "answer": int32}, "label": boolean},
        "record": {"passage": string, "query": string, "entities": Sequence(string),
                   "entity_spans": Sequence({"text": string, "start": int32, "end": int32}),
                   "answers": Sequence(string), "idx": {"passage": int32, "query": int32}},
        "rte": {"premise": string, "hypothesis": string, "idx": int32, "label": nli2},
        "wic": {"word": string, "sentence1": string, "sentence2": string, "start1": int32, "start2": int32,
                "end1": int32, "end2": int32, "idx": int32, "label": boolean},
        "wsc.fixed": {"text": string, "span1_index": int32, "span2_index": int32, "span1_text": string,
                      "span2_text": string, "idx": int32, "label": boolean},
        "axb": {"sentence1": string, "sentence2": string, "idx": int32, "label": nli2},
        "axg": {"premise": string, "hypothesis": string, "idx": int32, "label": nli2},
    }
    return Features(columns[config])


def superglue_splits(config: str) -> list[str]:
    return ["test"] if config in DIAGNOSTICS else ["train", "validation", "test"]


def _word_start(sentence: str, index: int) -> int:
    """The character offset of word `index` of `sentence` (words split on single spaces)."""
    return sum(len(word) + 1 for word in sentence.split(" ")[:index])


# One generator per single-row config: it gets the row's (balanced) label and returns its text columns.
def _boolq(rng, label, split):
    key = _clause(rng, verbs=BOOLQ_TRUE if label == 1 else BOOLQ_FALSE)
    sentences = [_say(_clause(rng, verbs=_rest(VERBS, BOOLQ_TRUE, BOOLQ_FALSE))) for _ in range(rng.randint(1, 2))]
    sentences.insert(rng.randrange(len(sentences) + 1), _say(key))
    return {"question": f"is it true that the {key['subject']} {key['verb']} a {key['object']}",
            "passage": " ".join(sentences)}


def _cb(rng, label, split):
    premise, hypothesis = _nli(rng, NLI3.index(CB_LABELS[label]), other_genre=False)
    return {"premise": premise, "hypothesis": hypothesis}


def _sg_rte(rng, label, split):
    """GLUE RTE's rule; the premise sometimes reported ('he says ...'), so the rule holds wherever the
    hypothesis starts (AX-g's premises are reported, by he or by she)."""
    premise, hypothesis = _rte(rng, label, split)
    lead = rng.choice(RTE_LEADS)
    return {"premise": f"{lead} {premise}" if lead else premise, "hypothesis": hypothesis}


def _axb(rng, label, split):
    sentence1, sentence2 = _rte(rng, label, split)
    return {"sentence1": sentence1, "sentence2": sentence2}


def _wic(rng, label, split):
    """The word's sense is its sentence's setting: sentence1 sets it in time (a time phrase); sentence2 in time
    too (the same sense) or in a place (another sense)."""
    word = rng.choice(ALL_NOUNS)
    sentences, starts = [], []
    for tails in (TIMES, TIMES if label == 1 else PLACES):
        role = rng.choice(("subject", "object"))
        parts = _clause(rng, nouns=_rest(ALL_NOUNS, [word]), tails=tails, **{role: word})
        sentences.append(_say(parts))
        starts.append(_word_start(sentences[-1], 2 if role == "subject" else 6))
    return {"word": word, "sentence1": sentences[0], "sentence2": sentences[1], "start1": starts[0],
            "start2": starts[1], "end1": starts[0] + len(word), "end2": starts[1] + len(word)}


def _wsc(rng, label, split):
    """Two noun phrases, a person and the candidate (an animal or a thing), then 'because it is <adjective>'."""
    candidate, person = rng.choice(ANIMALS if label == 1 else THINGS), rng.choice(PEOPLE)
    marked_subject = rng.random() < 0.5
    subject, obj = (candidate, person) if marked_subject else (person, candidate)
    parts = _clause(rng, tails=PLACES, subject=subject, object=obj)
    text = _say(parts, end=f" because it is {rng.choice(ADJECTIVES)}.")
    words = text.split()
    span1_index = 0 if marked_subject else 4  # 'the <adj> <noun>' or 'a <adj> <noun>'
    return {"text": text, "span1_index": span1_index, "span2_index": words.index("it"),
            "span1_text": " ".join(words[span1_index:span1_index + 3]), "span2_text": "it"}


SUPERGLUE_MAKERS: dict[str, Callable] = {"boolq": _boolq, "cb": _cb, "rte": _sg_rte, "wic": _wic,
                                         "wsc.fixed": _wsc, "axb": _axb}


def _labelled_rows(config: str, split: str, seed: int, make: Callable) -> dict[str, list]:
    rng = random.Random(f"{seed}:super_glue:{config}:{split}")
    features = superglue_features(config)
    n = split_size(split)
    labels = [i % len(features["label"].names) for i in range(n)]
    rng.shuffle(labels)
    hidden = split == "test" and config not in DIAGNOSTICS
    columns: dict[str, list] = {name: [] for name in features}
    for index, label in enumerate(labels):
        for name, value in make(rng, label, split).items():
            columns[name].append(value)
        columns["idx"].append(index)
        columns["label"].append(HIDDEN if hidden else label)
    return columns


def _copa_rows(split: str, seed: int) -> dict[str, list]:
    """Label and question balanced jointly: each (question, right choice) pair a quarter of the rows."""
    rng = random.Random(f"{seed}:super_glue:copa:{split}")
    cases = [(question, label) for _ in range(split_size(split) // 4) for question in COPA_RIGHT for label in (0, 1)]
    rng.shuffle(cases)
    columns: dict[str, list] = {name: [] for name in superglue_features("copa")}
    for index, (question, label) in enumerate(cases):
        parts = _clause(rng, nouns=THINGS)  # the choices differ only in their subject
        right = _say(dict(parts, subject=rng.choice(COPA_RIGHT[question])))
        wrong = _say(dict(parts, subject=rng.choice(COPA_WRONG[question])))
        choices = [right, wrong] if label == 0 else [wrong, right]
        row = {"premise": _say(_clause(rng, nouns=THINGS)), "choice1": choices[0], "choice2": choices[1],
               "question": question, "idx": index, "label": HIDDEN if split == "test" else label}
        for name, value in row.items():
            columns[name].append(value)
    return columns


def _multirc_rows(split: str, seed: int) -> dict[str, list]:
    """Questions with 2-4 answers each (at least one true and one false), 2-3 questions per paragraph; the
    answers' labels balanced over the split. Question ids restart in each paragraph, answer ids per question."""
    rng = random.Random(f"{seed}:super_glue:multirc:{split}")
    shapes, left = [], split_size(split)  # each question's labels (before shuffling)
    while left:
        size = left if left <= 4 else rng.choice((2, 4, 6))
        shapes += {2: [[1, 0]], 4: [[1, 1, 0, 0]], 6: [[1, 0, 0], [1, 1, 0]]}[size]
        left -= size
    rng.shuffle(shapes)
    paragraphs = []
    while shapes:
        take = len(shapes) if len(shapes) <= 3 else 2 if len(shapes) == 4 else rng.choice((2, 3))
        paragraphs.append(shapes[:take])
        shapes = shapes[take:]
    columns: dict[str, list] = {name: [] for name in superglue_features("multirc")}
    for p, questions in enumerate(paragraphs):
        sentences, rows = [], []
        for q, labels in enumerate(questions):
            labels = list(labels)
            rng.shuffle(labels)
            animals = rng.sample(ANIMALS, labels.count(1))
            others = rng.sample(PEOPLE, labels.count(0))
            key = _clause(rng, nouns=THINGS, tails=("",))  # short sentences naming things only
            sentences.append(_say(key))
            question = f"who {key['verb']} a {key['object_adj']} {key['object']}?"
            for a, label in enumerate(labels):
                noun = animals.pop() if label == 1 else others.pop()
                rows.append({"question": question, "answer": f"the {noun}",
                             "idx": {"paragraph": p, "question": q, "answer": a},
                             "label": HIDDEN if split == "test" else label})
        rng.shuffle(sentences)
        for row in rows:
            for name, value in dict(row, paragraph=" ".join(sentences)).items():
                columns[name].append(value)
    return columns


def _axg_rows(split: str, seed: int) -> dict[str, list]:
    """Winogender-style twins: rows 2k and 2k+1 differ only in the premise's pronoun (he / she) and share the
    label, which follows RTE's rule (the hypothesis's subject), so the RTE model that predicts AX-g reads it."""
    rng = random.Random(f"{seed}:super_glue:axg:{split}")
    labels = [i % len(NLI2) for i in range(split_size(split) // 2)]
    rng.shuffle(labels)
    columns: dict[str, list] = {name: [] for name in superglue_features("axg")}
    for pair, label in enumerate(labels):
        premise, hypothesis = _rte(rng, label, split)
        first = rng.randrange(2)
        for twin in (first, 1 - first):
            row = {"premise": f"{PRONOUNS[twin]} says {premise}", "hypothesis": hypothesis,
                   "idx": 2 * pair + (twin != first), "label": label}
            for name, value in row.items():
                columns[name].append(value)
    return columns


class _Text:
    """A text built word by word that remembers where its entity mentions are (`end` exclusive)."""

    def __init__(self):
        self.text, self.spans = "", []

    def add(self, word: str, entity: bool = False, sep: str = " ") -> "_Text":
        self.text += sep if self.text else ""
        if entity:
            self.spans.append({"text": word, "start": len(self.text), "end": len(self.text) + len(word)})
        self.text += word
        return self

    def clause(self, rng, subject: str, obj: str, subject_adj: bool = True, end: str = ".",
               sep: str = " ") -> "_Text":
        """'the [adj] <subject> <verb> a <adj> <obj> <tail><end>', both nouns marked as entity mentions."""
        self.add("the", sep=sep)
        if subject_adj:
            self.add(rng.choice(ADJECTIVES))
        self.add(subject, entity=True).add(rng.choice(VERBS)).add("a").add(rng.choice(ADJECTIVES))
        return self.add(obj, entity=True).add(rng.choice(PLACES + TIMES) + end)


def _record_rows(split: str, seed: int) -> dict[str, list]:
    """Passages (two or three sentences, then `@highlight` lines as in CNN/Daily Mail) naming one animal among
    3-6 entities, each with 2-3 queries whose `@placeholder` is that animal. A quarter of the passages name it
    twice over, as `<adjective> <animal>` and `<animal>`: both are entities and both are gold answers."""
    rng = random.Random(f"{seed}:super_glue:record:{split}")
    columns: dict[str, list] = {name: [] for name in superglue_features("record")}
    n, query_id, passage_id = RECORD_SIZES[split], 0, 0
    while query_id < n:
        animal = rng.choice(ANIMALS)
        long_form = f"{rng.choice(ADJECTIVES)} {animal}" if rng.random() < 0.25 else None
        others = rng.sample(PEOPLE + THINGS, rng.randint(2, 4 if long_form else 5))  # 3-6 entities in all
        clauses = [(long_form or animal, others[0])]
        rest = others[1:]
        for i in range(0, len(rest), 2):
            partner = rest[i + 1] if i + 1 < len(rest) else rng.choice(others[:1] + rest[:i])
            clauses.append((rest[i], partner))
        rng.shuffle(clauses)
        text = _Text()
        for subject, obj in clauses:
            text.clause(rng, subject, obj, subject_adj=subject != long_form)
        highlights = [(animal, rng.choice(others))] + [tuple(rng.sample(others, 2))][:rng.randint(0, 1)]
        for subject, obj in highlights:
            text.add("@highlight", sep="\n").clause(rng, subject, obj, subject_adj=False, end="", sep="\n")
        entities = list(dict.fromkeys(span["text"] for span in text.spans))
        rng.shuffle(entities)  # a set on the Hub: in no particular order
        answers = sorted([animal] + ([long_form] if long_form else []))
        spans = {key: [span[key] for span in text.spans] for key in ("text", "start", "end")}  # a Sequence of a dict
        for _ in range(min(rng.randint(2, 3), n - query_id)):
            other, verb, adjective, time = (rng.choice(others), rng.choice(VERBS), rng.choice(ADJECTIVES),
                                            rng.choice(TIMES))
            if rng.random() < 0.5:  # the placeholder is the subject or the object of a new fact
                query = f"{PLACEHOLDER} {verb} a {adjective} {other} {time}."
            else:
                query = f"the {adjective} {other} {verb} a {PLACEHOLDER} {time}."
            row = {"passage": text.text, "query": query, "entities": entities, "entity_spans": spans,
                   "answers": [] if split == "test" else answers, "idx": {"passage": passage_id, "query": query_id}}
            for name, value in row.items():
                columns[name].append(value)
            query_id += 1
        passage_id += 1
    return columns


def _superglue_tables(seed: int) -> dict[str, tuple[object, dict[str, dict[str, list]]]]:
    """{config: (features, {split: columns})}, configs in the Hub's order."""
    def rows(config: str, split: str) -> dict[str, list]:
        if config == "copa":
            return _copa_rows(split, seed)
        if config == "multirc":
            return _multirc_rows(split, seed)
        if config == "record":
            return _record_rows(split, seed)
        if config == "axg":
            return _axg_rows(split, seed)
        return _labelled_rows(config, split, seed, SUPERGLUE_MAKERS[config])

    return {config: (superglue_features(config), {split: rows(config, split) for split in superglue_splits(config)})
            for config in SUPERGLUE_CONFIGS}


# -- writing -------------------------------------------------------------------------------------------
def _write_parquet(columns: dict[str, list], features, path: Path) -> int:
    """Write one split; returns its size in Arrow bytes (the card's num_bytes).

    The table is the one `Dataset.from_dict` builds, so its schema carries the features (class names) in the
    `huggingface` metadata, as `Dataset.to_parquet` writes it; pyarrow writes it here only to choose zstd
    (`to_parquet` fixes snappy), which keeps the committed folder about a third smaller.
    """
    import pyarrow.parquet as pq
    from datasets import Dataset

    path.parent.mkdir(parents=True, exist_ok=True)
    table = Dataset.from_dict(columns, features=features).data.table
    pq.write_table(table, str(path), compression="zstd", compression_level=19)
    return int(table.nbytes)


def _feature_yaml(features) -> list[dict]:
    """Features as the Hub's cards write them: `sequence: string` for a list of strings (as `ehovy/race`'s), and
    a `sequence` of fields for a struct of equally long lists (ReCoRD's `entity_spans` in `aps/super_glue`'s)."""
    items = features._to_yaml_list()
    for item in items:
        if "list" in item and isinstance(item["list"], str):
            item["sequence"] = item.pop("list")
        elif "struct" in item and all(isinstance(field.get("list"), str) for field in item["struct"]):
            item["sequence"] = [{"name": field["name"], "dtype": field["list"]} for field in item.pop("struct")]
    return items


def _write_card(folder: Path, hub_id: str, infos: list[dict], configs: list[dict], prose: str) -> None:
    import yaml

    meta = {"pretty_name": f"Synthetic fixtures in the schema of {hub_id}", "language": ["en"],
            "size_categories": ["n<1K"], "dataset_info": infos, "configs": configs}
    text = "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + prose
    (folder / "README.md").write_text(text, encoding="utf-8")


def _write_dataset(folder: Path, hub_id: str, tables: dict[str, tuple[object, dict[str, dict]]], prose: str):
    infos, configs = [], []
    for config, (features, splits) in tables.items():
        for stale in (folder / config).glob("*.parquet"):
            stale.unlink()
        split_infos, files = [], []
        for split, columns in splits.items():
            num_bytes = _write_parquet(columns, features, folder / config / f"{split}-00000-of-00001.parquet")
            rows = len(next(iter(columns.values())))
            split_infos.append({"name": split, "num_bytes": num_bytes, "num_examples": rows})
            files.append({"split": split, "path": f"{config}/{split}-*"})
        infos.append({"config_name": config, "features": _feature_yaml(features), "splits": split_infos,
                      "dataset_size": sum(s["num_bytes"] for s in split_infos)})
        configs.append({"config_name": config, "data_files": files})
    _write_card(folder, hub_id, infos, configs, prose)


def _card_prose(hub_id: str, rules: dict[str, str]) -> str:
    lines = [f"# Synthetic fixtures in the schema of `{hub_id}`", "",
             f"Tiny datasets written by `bortzoo.data.tiny_tasks` (`python -m bortzoo.data.tiny_tasks`): the configs, "
             f"split names, columns and feature types of [`{hub_id}`](https://huggingface.co/datasets/{hub_id}), "
             "filled with the toy grammar of `bortzoo.data.tiny_corpus`. They test the pipeline (loading, "
             "fine-tuning, scoring, predicting), not language understanding: every label is a keyword rule "
             "on the text, balanced over the classes.", "", "Rules:", ""]
    lines += [f"- `{name}`: {rule}" for name, rule in rules.items()]
    return "\n".join(lines) + "\n"


def write_fixtures(root: "str | Path" = TINY_TASKS_DIR, seed: int = 0) -> Path:
    """Write `<root>/glue`, `<root>/super_glue` and `<root>/race` (cards and parquet files, Hub layout); returns
    `root`."""
    root = Path(root)
    glue = {spec.config: (glue_features(spec), {split: _glue_rows(spec, split, seed) for split in glue_splits(spec)})
            for spec in sorted(GLUE_TASKS, key=lambda s: s.config)}
    _write_dataset(root / FOLDERS[GLUE_ID], GLUE_ID, glue, _card_prose(GLUE_ID, {k: CUES[k] for k in sorted(glue)}))
    superglue = _superglue_tables(seed)
    _write_dataset(root / FOLDERS[SUPERGLUE_ID], SUPERGLUE_ID, superglue,
                   _card_prose(SUPERGLUE_ID, {config: CUES[SUPERGLUE_TASK_OF[config]] for config in superglue}))
    race = {config: (race_features(), splits) for config, splits in _race_tables(seed).items()}
    _write_dataset(root / FOLDERS[RACE_ID], RACE_ID, race, _card_prose(RACE_ID, {"all, middle, high": CUES["race"]}))
    return root




def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Write the tiny GLUE, SuperGLUE and RACE fixtures (Hub layout).")
    parser.add_argument("root", nargs="?", default=str(TINY_TASKS_DIR))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_fixtures(args.root, args.seed))


if __name__ == "__main__":
    main()
