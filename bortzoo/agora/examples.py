"""Agora's new training rows: the best model's mistakes, rewritten, then labelled by the weak model.

Three steps, each a function: `collect_mistakes` (rows of the Agora dev split the best trial gets wrong),
`generate_examples` (each mistake rewritten `variants` times by the transformation, the row's structure
kept, fresh ids) and `label_with` (the weak, "ok-ish" model's prediction becomes each new row's label: the
gold label of the source is never copied in, since the point is to learn from a second opinion on
nearby inputs, not to memorise the dev answers). Every new row records where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from bortzoo.errors import BortzooError
from bortzoo.tasks.spec import TaskSpec


@dataclass
class Encoding:
    """How the fine-tune recipe turns rows into inputs (the weak model and trials must read rows alike)."""

    max_length: int = 128
    pair_encoding: str = "tokenizer"
    batch_size: int = 64


def load_task_model(checkpoint: str, spec: TaskSpec):
    """A fine-tuned TaskModel from a Lightning checkpoint, read weights-only, in eval mode."""
    from bortzoo.modules.task_model import TaskModel

    try:
        model = TaskModel.load_from_checkpoint(str(checkpoint), map_location="cpu", weights_only=True)
    except (OSError, KeyError, RuntimeError) as err:
        raise BortzooError(f"cannot load the fine-tuned model {checkpoint}: {err}") from None
    if model.spec.name != spec.name:
        raise BortzooError(f"{checkpoint} is fine-tuned on {model.spec.name}, not {spec.name}")
    return model.eval()


@torch.no_grad()
def predict_rows(model, spec: TaskSpec, data, encoding: Encoding, device: Optional[str] = None) -> dict[int, int]:
    """The model's predicted class (or option) for every row of `data` (a Dataset in the task's schema), by id."""
    from torch.utils.data import DataLoader

    from bortzoo.data.encoding import PadCollator, encode_split

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    tokenizer = model.tokenizer
    encoded = encode_split(spec, data, "agora", tokenizer, encoding.max_length, encoding.pair_encoding).data
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    predicted: dict[int, int] = {}
    for batch in DataLoader(encoded, batch_size=encoding.batch_size, collate_fn=PadCollator(pad)):
        logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                       batch["token_type_ids"].to(device) if "token_type_ids" in batch else None,
                       batch["option_mask"].to(device) if "option_mask" in batch else None)
        for row_id, label in zip(_as_list(batch["ids"]), model.predictions(logits).tolist()):
            predicted[int(row_id)] = int(label)
    return predicted


def collect_mistakes(spec: TaskSpec, data, predicted: dict[int, int]) -> list[dict[str, Any]]:
    """The rows of `data` whose prediction differs from their label, each with `predicted` added."""
    mistakes = []
    for row in data:
        guess = predicted[row[spec.id_column]]
        if guess != row["label"]:
            mistakes.append({**row, "predicted": guess})
    return mistakes


def generate_examples(spec: TaskSpec, mistakes: list[dict[str, Any]], transform, variants: int, seed: int,
                      first_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """New rows from the mistakes: `variants` rewrites of each (only the task's rewritable text columns
    change), numbered from `first_id`. Returns (rows, provenance, unchanged): a rewrite identical to its
    source in every text is not a new example and is counted as unchanged instead of kept."""
    if not mistakes:
        return [], [], 0
    fields = spec.rewritable_fields
    sources = [{k: v for k, v in m.items() if k != "predicted"} for m in mistakes]
    rewrites = transform(sources, fields, variants, seed)
    if len(rewrites) != len(sources):
        raise BortzooError(f"the transformation returned {len(rewrites)} lists for {len(sources)} rows")
    rows, provenance, unchanged, next_id = [], [], 0, first_id
    for source, mistake, variants_of in zip(sources, mistakes, rewrites):
        for variant, row in enumerate(variants_of):
            if set(row) != set(source):
                raise BortzooError(f"the transformation changed the columns of row {source[spec.id_column]}: "
                                   f"{sorted(set(row) ^ set(source))}")
            if all(row[f] == source[f] for f in fields):
                unchanged += 1
                continue
            row = {**row, spec.id_column: next_id}
            rows.append(row)
            provenance.append({"id": next_id, "source_id": source[spec.id_column], "variant": variant,
                               "source_label": source["label"], "source_predicted": mistake["predicted"],
                               "texts": {f: row[f] for f in fields}})
            next_id += 1
    return rows, provenance, unchanged


def label_with(spec: TaskSpec, rows: list[dict[str, Any]], provenance: list[dict[str, Any]],
               predicted: dict[int, int]) -> list[dict[str, Any]]:
    """The rows with the weak model's predictions as labels (recorded in the provenance as `label`)."""
    labelled = []
    for row, origin in zip(rows, provenance):
        label = predicted[row[spec.id_column]]
        origin["label"] = label
        labelled.append({**row, "label": label})
    return labelled


def _as_list(values) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)
