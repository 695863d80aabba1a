"""One request through one model: the task's inputs → token ids (the task spec's encoding) → class
probabilities or a score, with the latency of that request and how much of the input was cut."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

from bortzoo.errors import BortzooError
from bortzoo.tasks import get_task
from bortzoo.tasks.spec import CHOICE, CLASSES, REGRESSION, TaskSpec

SINGLE, PAIR = "single", "pair"
MAX_OPTIONS = 8

# A sensible first input per task, so the page answers before anyone types.
EXAMPLES: dict[str, tuple[str, str, str]] = {
    "cola": ("The book was written by the author in three weeks.", "", ""),
    "sst2": ("A gripping, beautifully acted film that never lets go.", "", ""),
    "mrpc": ("The company said its profit rose 12 percent in the third quarter.",
             "Third-quarter profit climbed 12 percent, the company said.", ""),
    "stsb": ("A man is playing a guitar on stage.", "A man plays the guitar in front of a crowd.", ""),
    "qqp": ("How do I learn to cook Italian food?", "What is the best way to learn Italian cooking?", ""),
    "mnli": ("The museum is closed on Mondays for cleaning.", "Visitors cannot enter the museum on Monday.", ""),
    "qnli": ("When was the Eiffel Tower finished?",
             "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.", ""),
    "rte": ("Paris is the capital and largest city of France.", "Paris is in France.", ""),
    "wnli": ("The trophy does not fit into the suitcase because it is too big.", "The trophy is too big.", ""),
}
_RACE_EXAMPLE = ("Tom forgot his umbrella at home. When the rain started on his way to school, a classmate "
                 "shared hers, and they arrived dry.", "How did Tom stay dry?",
                 "He ran home\nA classmate shared an umbrella\nHe waited in a shop\nThe rain stopped at once")


def layout(spec: TaskSpec) -> str:
    """How the page asks for this task's input: one text, a pair, or passage + question + options."""
    if spec.kind == CHOICE:
        return CHOICE
    return PAIR if len(spec.text_fields) == 2 else SINGLE


def field_labels(spec: TaskSpec) -> tuple[str, str, str]:
    """Labels of the three input boxes (first text, second text, options), from the spec's columns."""
    names = [name.replace("_", " ") for name in spec.text_fields]
    if spec.kind == CHOICE:
        return names[0], names[1], f"{names[2]} (one per line, {spec.num_choices} expected)"
    return names[0], (names[1] if len(names) == 2 else ""), ""


def example_texts(task: str) -> tuple[str, str, str]:
    spec = get_task(task)
    return _RACE_EXAMPLE if spec.kind == CHOICE else EXAMPLES.get(spec.name, ("A short example sentence.", "", ""))


def task_row(spec: TaskSpec, first: str, second: str = "", options: str = "") -> dict:
    """The texts as one dataset row of the task (its own column names), checked: an empty box is named."""
    labels = field_labels(spec)
    shape = layout(spec)
    if not (first or "").strip():
        raise BortzooError(f"{spec.name}: the {labels[0]!r} box is empty; enter some text")
    if shape != SINGLE and not (second or "").strip():
        raise BortzooError(f"{spec.name}: the {labels[1]!r} box is empty; this task reads a pair of texts")
    values: list[object] = [first.strip()] + ([second.strip()] if shape != SINGLE else [])
    if shape == CHOICE:
        choices = [line.strip() for line in (options or "").splitlines() if line.strip()]
        if not 2 <= len(choices) <= MAX_OPTIONS:
            raise BortzooError(f"{spec.name}: give 2 to {MAX_OPTIONS} options, one per line (got {len(choices)})")
        values.append(choices)
    return dict(zip(spec.text_fields, values))


@dataclass
class Encoded:
    inputs: dict  # tensors for the model: input_ids, attention_mask, token_type_ids ([1, L] or [1, C, L])
    tokens: int  # tokens the model reads (the longest option's, for choices)
    cut: int  # tokens dropped to fit max_length (over all options)
    choices: list[str] = field(default_factory=list)


def encode(spec: TaskSpec, row: dict, tokenizer, template, max_length: int) -> Encoded:
    """The row's token ids, built by the same template and truncation as fine-tuning (longest text first)."""
    import torch

    built, cut = [], 0
    for first, second in spec.texts(row):
        a = tokenizer(first, add_special_tokens=False, verbose=False)["input_ids"]  # all of it: count what is cut
        b = tokenizer(second, add_special_tokens=False, verbose=False)["input_ids"] if second is not None else None
        full = len(a) + len(b or []) + template.budget(b is not None)
        ids, types, _ = template.build(a, b, max_length)
        cut += max(0, full - len(ids))
        built.append((ids, types))
    width = max(len(ids) for ids, _ in built)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in built])
    token_types = torch.tensor([types + [0] * (width - len(types)) for _, types in built])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in built])
    inputs = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": token_types}
    if spec.kind == CHOICE:
        inputs = {k: v.unsqueeze(0) for k, v in inputs.items()}  # [1, options, L]
    choices = list(row[spec.text_fields[-1]]) if spec.kind == CHOICE else []
    return Encoded(inputs, width, cut, choices)


@dataclass
class Prediction:
    """What one model said about one input, and what it cost."""

    kind: str
    probabilities: dict[str, float]  # class or option → probability (empty for regression)
    score: Optional[float]  # regression only
    forward_ms: float
    tokenize_ms: float
    tokens: int
    cut: int
    max_length: int

    @property
    def top(self) -> str:
        if self.kind == REGRESSION:
            return f"{self.score:.2f}"
        return max(self.probabilities, key=self.probabilities.__getitem__)

    def label_value(self) -> Union[dict[str, float], str]:
        """What a Gradio Label shows: the probabilities, or the score for regression."""
        return self.probabilities if self.kind != REGRESSION else self.top

    def latency_text(self, threads: int) -> str:
        text = (f"forward **{self.forward_ms:.1f} ms** (tokenise {self.tokenize_ms:.1f} ms), {self.tokens} tokens, "
                f"{threads} thread{'s' if threads != 1 else ''}")
        if self.cut:
            text += f"  \n⚠ input truncated: {self.cut} token{'s' if self.cut != 1 else ''} cut to fit {self.max_length}"
        return text


def class_names(model, spec: TaskSpec) -> list[str]:
    """The model's own label names when it has real ones, else the task spec's."""
    id2label = getattr(model.config, "id2label", None) or {}
    names = [str(id2label.get(i, "")) for i in range(spec.num_labels)]
    if all(names) and not any(name.startswith("LABEL_") for name in names):
        return names
    return list(spec.label_names)


def run_model(loaded, spec: TaskSpec, texts: Sequence[str]) -> Prediction:
    """Encode `texts` (first, second, options) for the task and run `loaded.model` once, timed."""
    import torch

    start = time.perf_counter()
    row = task_row(spec, *texts)
    encoded = encode(spec, row, loaded.tokenizer, loaded.template, loaded.max_length)
    tokenize_ms = (time.perf_counter() - start) * 1e3
    config = loaded.model.config
    inputs = dict(encoded.inputs)
    if getattr(config, "type_vocab_size", 2) < 2:
        inputs["token_type_ids"] = torch.zeros_like(inputs["token_type_ids"])
    with torch.inference_mode():
        start = time.perf_counter()
        logits = loaded.model(**inputs).logits.float()
        forward_ms = (time.perf_counter() - start) * 1e3
    probabilities, score = {}, None
    if spec.kind == REGRESSION:
        score = float(logits.reshape(-1)[0])
    else:
        probs = torch.softmax(logits.reshape(-1), dim=0).tolist()
        if spec.kind == CLASSES:
            names = class_names(loaded.model, spec)
        else:
            names = [f"{chr(ord('A') + i)}: {_short(option)}" for i, option in enumerate(encoded.choices)]
        probabilities = dict(zip(names, probs))
    return Prediction(spec.kind, probabilities, score, forward_ms, tokenize_ms, encoded.tokens, encoded.cut,
                      loaded.max_length)


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
