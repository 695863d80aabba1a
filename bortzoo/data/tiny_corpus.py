"""Text the project writes itself: a seeded toy grammar for tiny corpora, tokenizers and tests.

Nothing is downloaded: the same seed always gives the same lines. Some patterns repeat exactly
("the capital of X is Y") so a tiny model can memorise them and fill their masks.
"""

from __future__ import annotations

import random

NOUNS = ["cat", "dog", "bird", "fox", "horse", "farmer", "teacher", "child", "river", "city", "ship",
         "garden", "engine", "model", "student", "teacher", "library", "window", "mountain", "storm"]
ADJECTIVES = ["small", "quick", "quiet", "old", "bright", "heavy", "green", "tired", "clever", "distant"]
VERBS = ["sees", "follows", "finds", "helps", "watches", "builds", "carries", "visits", "paints", "counts"]
PLACES = ["near the river", "in the city", "on the hill", "under the bridge", "at the market", "by the sea"]
TIMES = ["in the morning", "at night", "every day", "after the rain", "before dinner", "in winter"]
CAPITALS = {"france": "paris", "italy": "rome", "spain": "madrid", "japan": "tokyo", "egypt": "cairo",
            "peru": "lima", "kenya": "nairobi", "norway": "oslo"}


def sentence(rng: random.Random) -> str:
    """One sentence of the toy grammar."""
    kind = rng.random()
    if kind < 0.2:
        country = rng.choice(sorted(CAPITALS))
        return f"the capital of {country} is {CAPITALS[country]}."
    subject = f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    obj = f"a {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    tail = rng.choice(PLACES) if kind < 0.6 else rng.choice(TIMES)
    return f"{subject} {rng.choice(VERBS)} {obj} {tail}."


def paragraphs(n: int, seed: int = 0, sentences_per_paragraph: tuple[int, int] = (3, 8)) -> list[str]:
    """`n` paragraphs (one per line of a corpus file), deterministic under `seed`."""
    rng = random.Random(seed)
    lo, hi = sentences_per_paragraph
    return [" ".join(sentence(rng) for _ in range(rng.randint(lo, hi))) for _ in range(n)]

