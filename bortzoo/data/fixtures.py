"""Tiny task datasets in the exact layout and schema of the Hub's `nyu-mll/glue` and `ehovy/race`.

Tests and tiny recipes fine-tune, evaluate and predict every task offline. They read these folders with the
same call as the real data: ``datasets.load_dataset("<root>/glue", "cola")`` behaves like
``datasets.load_dataset("nyu-mll/glue", "cola")`` (same configs, split names, columns, feature types and
class names), only smaller: train 384 rows, each validation split 96, each test split 48 (AX's too). RACE's
``all`` is ``middle`` followed by ``high``, split by split, as on the Hub, so it has twice the rows.

The fixtures test the pipeline, not language understanding. The text is the toy grammar of
`bortzoo.data.synthetic` (the tiny tokenizer's words, most of them one token), and every label is a simple keyword
rule on the text (`CUES`), balanced over the classes, so that a tiny randomly initialised transformer learns
it in seconds and a fine-tune that works is told from one that does not: it scores clearly above chance.
Test splits hide their labels (-1) as GLUE's do; RACE's test answers are public, as on the Hub.

    python -m bortzoo.data.fixtures [ROOT]  # regenerates bortzoo/assets/tiny-tasks

The same seed always gives the same tables (only `random.Random` draws the text).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Callable, Optional

from bortzoo.data.synthetic import ADJECTIVES, CAPITALS, NOUNS, PLACES, TIMES, VERBS
from bortzoo.data.tasks import (GLUE_ID, GLUE_TASKS, NLI3, RACE_ID, RACE_LETTERS, RACE_TASKS, REGRESSION,
                                TaskSpec)
from bortzoo.errors import BortzooError

TINY_TASKS_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny-tasks"
FOLDERS = {GLUE_ID: "glue", RACE_ID: "race"}  # Hub dataset id -> folder under the fixtures root
SIZES = {"train": 384, "validation": 96, "test": 48}  # rows per split, by the split's kind
HIDDEN = -1  # the label of a GLUE test row

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
    """Features as the Hub's cards write them (`sequence: string` for a list of strings, as `ehovy/race`'s)."""
    items = features._to_yaml_list()
    for item in items:
        if "list" in item and isinstance(item["list"], str):
            item["sequence"] = item.pop("list")
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
             f"Tiny datasets written by `bortzoo.data.fixtures` (`python -m bortzoo.data.fixtures`): the configs, "
             f"split names, columns and feature types of [`{hub_id}`](https://huggingface.co/datasets/{hub_id}), "
             "filled with the toy grammar of `bortzoo.data.synthetic`. They test the pipeline (loading, "
             "fine-tuning, scoring, predicting), not language understanding: every label is a keyword rule "
             "on the text, balanced over the classes.", "", "Rules:", ""]
    lines += [f"- `{name}`: {rule}" for name, rule in rules.items()]
    return "\n".join(lines) + "\n"


def write_fixtures(root: "str | Path" = TINY_TASKS_DIR, seed: int = 0) -> Path:
    """Write `<root>/glue` and `<root>/race` (cards and parquet files, Hub layout); returns `root`."""
    root = Path(root)
    glue = {spec.config: (glue_features(spec), {split: _glue_rows(spec, split, seed) for split in glue_splits(spec)})
            for spec in sorted(GLUE_TASKS, key=lambda s: s.config)}
    _write_dataset(root / FOLDERS[GLUE_ID], GLUE_ID, glue, _card_prose(GLUE_ID, {k: CUES[k] for k in sorted(glue)}))
    race = {config: (race_features(), splits) for config, splits in _race_tables(seed).items()}
    _write_dataset(root / FOLDERS[RACE_ID], RACE_ID, race, _card_prose(RACE_ID, {"all, middle, high": CUES["race"]}))
    return root


def dataset_folder(spec: TaskSpec, root: "str | Path" = TINY_TASKS_DIR) -> str:
    """The fixtures folder that stands in for `spec.dataset` (load it with `spec.config` as the name)."""
    if spec.dataset not in FOLDERS:
        raise BortzooError(f"task {spec.name!r}: no fixtures for dataset {spec.dataset!r}; "
                           f"fixtures exist for {', '.join(FOLDERS)}")
    return str(Path(root) / FOLDERS[spec.dataset])


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Write the tiny GLUE and RACE fixtures (Hub layout).")
    parser.add_argument("root", nargs="?", default=str(TINY_TASKS_DIR))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_fixtures(args.root, args.seed))


if __name__ == "__main__":
    main()
