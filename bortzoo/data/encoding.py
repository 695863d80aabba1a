"""A task's rows as token ids: the pair template (the tokenizer's own, or Bort's `<s> A </s> B </s>`),
longest-first truncation that counts what it cut, and the collator that pads per batch."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch

from bortzoo.data.rows import check_labels, check_option_lists, check_rows, check_texts
from bortzoo.errors import BortzooError
from bortzoo.tasks.spec import CHOICE, RANKING, REGRESSION, TaskSpec

PAIR_ENCODINGS = ("tokenizer", "bort")
ENCODING_VERSION = "2"  # bump when the encoding below changes, so cached encodings are not reused


# -- encoding -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Template:
    """Where a tokenizer puts its special tokens around one text or a pair, read off the tokenizer itself.

    ``bort`` pair encoding uses one separator between the texts (`<s> A </s> B </s>`, as the official
    Bort code did) where RoBERTa's tokenizer puts two.
    """

    start: tuple[int, ...]
    middle: tuple[int, ...]
    end: tuple[int, ...]
    second_type: int  # token type id of the second text (1 for BERT, 0 for RoBERTa)

    @classmethod
    def of(cls, tokenizer, pair_encoding: str = "tokenizer") -> "Template":
        if pair_encoding not in PAIR_ENCODINGS:
            raise BortzooError(f"pair_encoding must be one of {PAIR_ENCODINGS}, got {pair_encoding!r}")
        a = tokenizer("a", add_special_tokens=False)["input_ids"]
        b = tokenizer("b", add_special_tokens=False)["input_ids"]
        pair = tokenizer("a", "b", return_token_type_ids=True)
        ids = list(pair["input_ids"])
        at = _find(ids, a, 0)
        bt = _find(ids, b, at + len(a))
        if at < 0 or bt < 0:
            raise BortzooError(f"cannot read the pair template of tokenizer {type(tokenizer).__name__}")
        start, middle, end = ids[:at], ids[at + len(a):bt], ids[bt + len(b):]
        types = pair.get("token_type_ids") or [0] * len(ids)
        if pair_encoding == "bort":
            middle = end
        return cls(tuple(start), tuple(middle), tuple(end), int(types[-1]))

    @classmethod
    def from_dict(cls, data: dict) -> "Template":
        """The template a run recorded in its results.json (`TaskData.run_facts`)."""
        return cls(tuple(data["start"]), tuple(data["middle"]), tuple(data["end"]), int(data["second_type"]))

    def budget(self, pair: bool) -> int:
        return len(self.start) + len(self.end) + (len(self.middle) if pair else 0)

    def build(self, first: list[int], second: Optional[list[int]], max_length: int):
        """input_ids, token_type_ids and whether anything was cut, truncating the longer text first."""
        room = max_length - self.budget(second is not None)
        if room < 2:
            raise BortzooError(f"max_length {max_length} leaves no room for text after the special tokens")
        truncated = False
        if second is None:
            if len(first) > room:
                first, truncated = first[:room], True
            ids = [*self.start, *first, *self.end]
            return ids, [0] * len(ids), truncated
        if len(first) + len(second) > room:
            truncated = True
            keep_first, keep_second = _longest_first(len(first), len(second), room)
            first, second = first[:keep_first], second[:keep_second]
        head = [*self.start, *first, *self.middle]
        tail = [*second, *self.end]
        return head + tail, [0] * len(head) + [self.second_type] * len(tail), truncated


def _find(haystack: list[int], needle: list[int], start: int) -> int:
    for i in range(start, len(haystack) - len(needle) + 1):
        if haystack[i:i + len(needle)] == needle:
            return i
    return -1


def _longest_first(n_first: int, n_second: int, room: int) -> tuple[int, int]:
    """Lengths after removing tokens one at a time from the longer text until both fit in `room`."""
    short = min(n_first, n_second)
    if short <= room // 2:
        return (room - short, short) if n_first > n_second else (short, room - short)
    return math.ceil(room / 2), room // 2


def encode_rows(batch: dict[str, list], spec: TaskSpec, tokenizer, template: Template, max_length: int,
                hidden: bool = False) -> dict:
    """A `datasets.map` batch function: the token ids of every row (one sequence per option for choices, per
    candidate for rankings), and what the metrics need beside the label: `groups` (the row's group key),
    and for rankings the `candidates`, the `gold_answers` and the `labels` (one 0/1 per candidate)."""
    count = len(next(iter(batch.values())))
    rows = [{key: batch[key][i] for key in batch} for i in range(count)]
    pairs = [spec.texts(row) for row in rows]
    texts = list(dict.fromkeys(t for row_pairs in pairs for pair in row_pairs for t in pair if t is not None))
    ids = dict(zip(texts, tokenizer(texts, add_special_tokens=False)["input_ids"])) if texts else {}
    out: dict[str, list] = {"input_ids": [], "token_type_ids": [], "truncated": []}
    if spec.group is not None:
        out["groups"] = [list(spec.group(row)) for row in rows]
    if spec.kind == RANKING:
        out["candidates"] = [spec.candidates(row) for row in rows]
        out["gold_answers"] = [[] if hidden else list(row[spec.label_columns[0]] or []) for row in rows]
        out["labels"] = [[0] * len(c) if hidden else spec.target(row) for c, row in zip(out["candidates"], rows)]
    for row_pairs in pairs:
        built = [template.build(ids[a], ids[b] if b is not None else None, max_length) for a, b in row_pairs]
        if spec.kind in (CHOICE, RANKING):
            out["input_ids"].append([x[0] for x in built])
            out["token_type_ids"].append([x[1] for x in built])
        else:
            out["input_ids"].append(built[0][0])
            out["token_type_ids"].append(built[0][1])
        out["truncated"].append(any(x[2] for x in built))
    return out


@dataclass
class Encoded:
    """A split as model inputs (`input_ids`, `token_type_ids`, `labels`, `ids`, and `groups`, `candidates`,
    `gold_answers` where the task has them), how many rows were truncated, and the rows' notes."""

    data: Any
    truncated: int
    notes: dict[str, list[tuple[int, str]]]


def encode_split(spec: TaskSpec, data, split: str, tokenizer, max_length: int, pair_encoding: str = "tokenizer",
                 hidden: bool = False) -> Encoded:
    """Check every row of the split (texts, the spec's reading of it, labels), then tokenise it."""
    check_texts(spec, data, split)
    if spec.kind == CHOICE and spec.pairs is None:
        check_option_lists(spec, data, split)
    notes = check_rows(spec, data, split)
    labels = check_labels(spec, data, split, hidden)
    template = Template.of(tokenizer, pair_encoding)
    key = "|".join([ENCODING_VERSION, spec.name, split, str(getattr(data, "_fingerprint", "")), str(data.cache_files),
                    str(getattr(tokenizer, "name_or_path", "")), str(len(tokenizer)), str(max_length), pair_encoding,
                    str(hidden)])
    encoded = data.map(
        encode_rows, batched=True, batch_size=1000,
        fn_kwargs={"spec": spec, "tokenizer": tokenizer, "template": template, "max_length": max_length,
                   "hidden": hidden},
        remove_columns=[c for c in data.column_names if c != spec.id_column],
        new_fingerprint=hashlib.sha256(key.encode()).hexdigest()[:32],
        desc=f"tokenise {spec.name}/{split}",
    )
    encoded = encoded.rename_column(spec.id_column, "ids") if spec.id_column != "ids" else encoded
    if spec.kind != RANKING:  # a ranking's labels (one per candidate) come out of encode_rows
        encoded = encoded.add_column("labels", [float(x) for x in labels] if spec.kind == REGRESSION else labels)
    truncated = int(sum(encoded["truncated"]))
    return Encoded(encoded.remove_columns(["truncated"]), truncated, notes)




# -- batching -----------------------------------------------------------------------------------------
class PadCollator:
    """Pads a batch to its longest sequence; the options of multiple-choice rows are padded alike.

    Rows with different numbers of options (a ranking's candidates) are padded to the most options in the
    batch with one-token dummy sequences, and `option_mask` ([rows, options], True for real options) tells the
    model which to ignore. Group keys become a `groups` tensor; a ranking's `candidates` and gold answers
    (`answers`) stay lists of strings for the metrics and the leaderboard file.
    """

    def __init__(self, pad_id: int, regression: bool = False):
        self.pad_id = pad_id
        self.regression = regression

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        ids = [row["input_ids"] for row in rows]
        choice = bool(ids) and isinstance(ids[0][0], list)
        types = [row["token_type_ids"] for row in rows]
        options = max(len(item) for item in ids) if choice else 0
        ragged = choice and any(len(item) != options for item in ids)
        if choice:  # pad every row to `options` sequences; a dummy is one attended pad token (no empty softmax)
            flat_ids = [seq for item in ids for seq in (*item, *[[self.pad_id]] * (options - len(item)))]
            flat_types = [seq for item in types for seq in (*item, *[[0]] * (options - len(item)))]
        else:
            flat_ids, flat_types = ids, types
        longest = max(len(seq) for seq in flat_ids)
        input_ids = torch.full((len(flat_ids), longest), self.pad_id, dtype=torch.long)
        token_types = torch.zeros((len(flat_ids), longest), dtype=torch.long)
        mask = torch.zeros((len(flat_ids), longest), dtype=torch.long)
        for i, (seq, seq_types) in enumerate(zip(flat_ids, flat_types)):
            input_ids[i, :len(seq)] = torch.tensor(seq)
            token_types[i, :len(seq)] = torch.tensor(seq_types)
            mask[i, :len(seq)] = 1
        batch: dict[str, Any] = {"ids": [row["ids"] for row in rows]}
        if choice:
            shape = (len(rows), options, longest)
            input_ids, token_types, mask = input_ids.view(shape), token_types.view(shape), mask.view(shape)
        batch.update(input_ids=input_ids, attention_mask=mask, token_type_ids=token_types)
        if ragged or (choice and isinstance(rows[0]["labels"], list)):
            option_mask = torch.zeros((len(rows), options), dtype=torch.bool)
            for i, item in enumerate(ids):
                option_mask[i, :len(item)] = True
            batch["option_mask"] = option_mask
        labels = [row["labels"] for row in rows]
        if labels and isinstance(labels[0], list):  # one 0/1 per candidate
            batch["labels"] = torch.tensor([[*x, *[0] * (options - len(x))] for x in labels], dtype=torch.float)
        else:
            batch["labels"] = torch.tensor(labels, dtype=torch.float if self.regression else torch.long)
        if "groups" in rows[0]:
            batch["groups"] = torch.tensor([row["groups"] for row in rows], dtype=torch.long)
        if "candidates" in rows[0]:
            batch["candidates"] = [row["candidates"] for row in rows]
            batch["answers"] = [row["gold_answers"] for row in rows]
        return batch
