"""A sentiment task (SST-2's schema) that only transfer can solve: the validation rows use sentiment words the
training rows never contain. A randomly initialised encoder has never seen "superb" or "atrocious" and stays
near chance on them; a pretrained one knows they mean what "wonderful" and "awful" mean. Rows are made here
from templates (no downloaded data), deterministic, in the Hub layout of `nyu-mll/glue` (config sst2)."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

NOUNS = ("movie", "film", "story", "plot", "acting", "ending", "script", "soundtrack", "cast", "show", "book",
         "meal", "trip", "concert", "game")
TEMPLATES = ("the {noun} was {adj}.", "i thought the {noun} was {adj}.", "what a {adj} {noun}.",
             "honestly, a {adj} {noun}.", "everyone agreed the {noun} was {adj}.")
TRAIN_WORDS = {1: ("good", "great", "wonderful", "excellent", "lovely", "fantastic", "delightful", "enjoyable",
                   "beautiful", "amazing"),
               0: ("bad", "terrible", "awful", "horrible", "boring", "dreadful", "disappointing", "poor", "ugly",
                   "annoying")}
HELD_OUT_WORDS = {1: ("superb", "brilliant", "marvelous", "splendid", "terrific", "outstanding"),
                  0: ("lousy", "atrocious", "dismal", "mediocre", "abysmal", "pathetic")}

CARD = """---
configs:
- config_name: sst2
  data_files:
  - split: train
    path: sst2/train-00000-of-00001.parquet
  - split: validation
    path: sst2/validation-00000-of-00001.parquet
  - split: test
    path: sst2/test-00000-of-00001.parquet
---
Sentiment rows made from templates for bortzoo's real-weights tests (tests/real/sentiment.py).
"""


def rows(words: dict, count: int, seed: int) -> list[dict]:
    every = [(template.format(noun=noun, adj=adj), label) for label, adjs in words.items()
             for template, noun, adj in itertools.product(TEMPLATES, NOUNS, adjs)]
    random.Random(seed).shuffle(every)
    return [{"sentence": text, "label": label, "idx": i} for i, (text, label) in enumerate(every[:count])]


def write_sentiment(folder: Path, train: int = 480, validation: int = 120) -> Path:
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"]),
                         "idx": Value("int32")})
    splits = {"train": rows(TRAIN_WORDS, train, 0), "validation": rows(HELD_OUT_WORDS, validation, 1),
              "test": [dict(row, label=-1) for row in rows(HELD_OUT_WORDS, 40, 2)]}
    (folder / "sst2").mkdir(parents=True)
    for split, data in splits.items():
        Dataset.from_list(data, features=features).to_parquet(folder / "sst2" / f"{split}-00000-of-00001.parquet")
    (folder / "README.md").write_text(CARD)
    return folder
