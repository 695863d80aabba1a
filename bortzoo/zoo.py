"""The zoo: named checkpoints that really exist on the Hub, and `load()` for them, for Hub ids and for folders.

Like timm's pretrained configs, each entry says where the weights live (Hub id and revision), what they
are (kind, `Arch`, task, label names) and who made them. Only checkpoints that exist are listed: the
authors' `amazon/bort` (encoder only: its masked-LM head was never converted and fills masks with junk),
the teachers, and community BERT-large GLUE fine-tunes. bortzoo's own checkpoints join the list as they
are published (`bortzoo publish` prints the entry to add).

    model, tokenizer = bortzoo.load("bert-large-rte")       # a zoo name
    model, tokenizer = bortzoo.load("amazon/bort")          # any Hub id
    model, tokenizer = bortzoo.load("runs/finetune/glue/rte-bort/hub")  # a folder written by `bortzoo publish`
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from bortzoo.arch import Arch, get_arch
from bortzoo.errors import BortzooError
from bortzoo.tasks import get_task

# kind → what `load` returns: the bare encoder, a masked-LM, a task model, or a search candidate (masked-LM).
KINDS = ("encoder", "masked-lm", "task", "candidate")
logger = logging.getLogger("bortzoo")


@dataclass(frozen=True)
class ZooEntry:
    """One named checkpoint.

    Args:
        name: The zoo name (`bortzoo.load(name)`).
        hub_id: Hub repo id.
        kind: ``encoder``, ``masked-lm``, ``task`` or ``candidate``.
        arch: Its shape: a preset name, "D,A,H,I" (RoBERTa vocabulary) or an `Arch` dict.
        revision: Hub revision to load; None = the repo's main branch (not pinned).
        task: Registered task of a ``task`` entry.
        by: Who trained it (``bortzoo`` for this project's own checkpoints).
        notes: What a user must know before using it.
    """

    name: str
    hub_id: str
    kind: str
    arch: Union[str, dict]
    revision: Optional[str] = None
    task: Optional[str] = None
    by: str = "bortzoo"
    notes: str = ""
    label_names: tuple[str, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BortzooError(f"zoo entry {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if (self.kind == "task") != (self.task is not None):
            raise BortzooError(f"zoo entry {self.name!r}: a task entry needs a task, and only it")
        if self.task is not None:
            object.__setattr__(self, "label_names", get_task(self.task).label_names)

    @property
    def shape(self) -> Arch:
        return get_arch(self.arch)


REGISTRY: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    if entry.name in REGISTRY:
        raise BortzooError(f"zoo name {entry.name!r} is already registered (for {REGISTRY[entry.name].hub_id})")
    REGISTRY[entry.name] = entry
    return entry


register(ZooEntry("bort", "amazon/bort", "encoder", "bort", by="Bort's authors",
                  notes="encoder weights only: the masked-LM head was never converted (mask filling gives junk); "
                        "RoBERTa tokenizer; deprecated in transformers since v4.30, loads as BERT"))
register(ZooEntry("roberta-large", "FacebookAI/roberta-large", "masked-lm", "roberta-large", by="Facebook AI",
                  notes="Bort's distillation teacher"))
register(ZooEntry("bert-large", "google-bert/bert-large-uncased", "masked-lm", "bert-large", by="Google",
                  notes="the maximum point of the search and the fine-tuning baseline"))
register(ZooEntry("bert-base", "google-bert/bert-base-uncased", "masked-lm", "bert-base", by="Google"))
for _task in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"):
    register(ZooEntry(f"bert-large-{_task}", f"yoshitomo-matsubara/bert-large-uncased-{_task}", "task", "bert-large",
                      task=_task, by="Y. Matsubara (torchdistill)", notes="torchdistill fine-tune (BERT paper hyperparameters); labels in "
                                        "nyu-mll/glue order" + ("; also predicts AX" if _task == "mnli" else "")))


# -- what a model reference names (the one resolver) ------------------------------------------------
REF_KINDS = ("arch", "checkpoint", "pretrained")


@dataclass(frozen=True)
class ModelRef:
    """What a `model` argument names, decided in one place for every reader (TaskModel, publish, `load`):

    - ``arch``: no weights, a shape to build with random values (`model=None`, `arch=...`);
    - ``checkpoint``: a bortzoo pretraining `.ckpt` (a `Student`'s Lightning checkpoint);
    - ``pretrained``: transformers' layout, from a Hub id, a local folder, or a zoo name (resolved here to its
      Hub id and pinned revision).
    """

    kind: str
    source: Optional[str] = None  # the .ckpt path, Hub id or folder
    revision: Optional[str] = None
    shape: Optional[Arch] = None  # kind "arch"
    entry: Optional[ZooEntry] = None  # a zoo name's entry

    def folder(self) -> Path:
        """The local folder of a ``pretrained`` reference (a Hub snapshot, downloaded or cached)."""
        from bortzoo.hub import resolve

        if self.kind != "pretrained":
            raise BortzooError(f"{self.source or self.shape}: a {self.kind} reference has no model folder")
        return resolve(self.source, self.revision)

    def arch(self) -> Arch:
        """The encoder's shape, read from what the reference names (no weights are loaded)."""
        if self.kind == "arch":
            return self.shape
        if self.kind == "checkpoint":
            import torch

            hparams = torch.load(self.source, map_location="cpu", weights_only=True).get("hyper_parameters", {})
            if hparams.get("arch") is None:
                raise BortzooError(f"{self.source} is not a bortzoo pretraining checkpoint (no hyper_parameters.arch)")
            return get_arch(hparams["arch"])
        from bortzoo.hub import load_config

        return Arch.from_config(load_config(self.source, self.revision))


def model_ref(model: "str | Path | None", revision: Optional[str] = None, arch=None) -> ModelRef:
    """Read a model reference: a zoo name, Hub id, folder or `.ckpt`, or None with `arch` for random weights."""
    if model is None:
        if arch is None:
            raise BortzooError("no model: give a zoo name, Hub id, folder or .ckpt, or an arch for random weights")
        return ModelRef("arch", shape=get_arch(arch))
    text = str(model)
    if text.endswith(".ckpt"):
        from bortzoo.resources import project_path

        path = project_path(text)
        if not Path(path).is_file():
            raise BortzooError(f"checkpoint {text!r} does not exist")
        return ModelRef("checkpoint", str(path))
    entry = REGISTRY.get(text)
    if entry is not None:
        return ModelRef("pretrained", entry.hub_id, revision or entry.revision, entry=entry)
    return ModelRef("pretrained", text, revision)


# -- loading ---------------------------------------------------------------------------------------
DTYPES = ("float32", "bfloat16", "float16", "auto")


def load(ref: str, revision: Optional[str] = None, eval_mode: bool = True, dtype: str = "float32"):
    """The ready (model, tokenizer) of a zoo name, a Hub id or a local folder.

    The model class follows what the checkpoint is: a task model (sequence classification or multiple
    choice, as `config.json` says), a masked-LM, or the bare encoder when the masked-LM head was never
    trained (`amazon/bort`, or any copy of it: mask filling would give junk; a warning says so). Weights are
    read from safetensors, or a `.bin` only with `torch.load(weights_only=True)`.

    Args:
        ref: Zoo name, Hub id or local folder.
        revision: Hub revision.
        eval_mode: Return the model in eval mode (dropout off).
        dtype: The dtype the model runs in: ``float32`` (default: exact on every CPU), ``bfloat16``,
            ``float16``, or ``auto`` to keep what the checkpoint stores (amazon/bort: float16, which many
            CPUs run slowly or not at all). The choice and the stored dtype are logged (logger ``bortzoo``).
    """
    import torch

    from bortzoo.hub import load_tokenizer, stored_dtype, untrained_mlm_head

    if dtype not in DTYPES:
        raise BortzooError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    found = model_ref(ref, revision)
    if found.kind != "pretrained":
        raise BortzooError(f"{ref}: bortzoo.load reads a zoo name, Hub id or folder; export a pretraining checkpoint "
                           "first (bortzoo export --checkpoint C.ckpt --out DIR)")
    entry, source, revision = found.entry, found.source, found.revision
    folder = found.folder()
    kind = entry.kind if entry else _kind_of(source, folder)
    if kind != "task" and (_is_amazon_bort(source) or untrained_mlm_head(folder)):
        warnings.warn(f"{source}: its masked-LM head is broken (never trained: amazon/bort's conversion copied only "
                      "the encoder, so mask filling gives junk): loading the bare encoder", stacklevel=2)
        kind = "encoder"
    model = _load_model(kind, source, revision, folder)
    stored = stored_dtype(folder)
    if dtype != "auto":
        model = model.to(getattr(torch, dtype))
    logger.info("%s: weights stored as %s, running in %s", source, stored, str(next(model.parameters()).dtype)[6:])
    if entry is not None and entry.label_names:
        _name_labels(model, entry)
    tokenizer = load_tokenizer(source, revision)
    if eval_mode:
        model.eval()
    return model, tokenizer


def _is_amazon_bort(source: str) -> bool:
    return str(source).strip("/").lower() == "amazon/bort"


def _name_labels(model, entry: ZooEntry) -> None:
    """Give a task checkpoint the task spec's label names when it only has generic ones (LABEL_0, ...)."""
    config = model.config
    if config.num_labels != len(entry.label_names):
        raise BortzooError(f"zoo entry {entry.name!r}: {entry.hub_id} has {config.num_labels} outputs but task "
                           f"{entry.task} has {len(entry.label_names)} labels")
    if all(str(name).startswith("LABEL_") for name in config.id2label.values()):
        config.id2label = dict(enumerate(entry.label_names))
        config.label2id = {name: index for index, name in enumerate(entry.label_names)}


def _kind_of(source: str, folder: Path) -> str:
    """A checkpoint's kind from its config (the class it was saved as)."""
    config = json.loads((folder / "config.json").read_text())
    architectures = config.get("architectures") or []
    if any(a.endswith(("ForSequenceClassification", "ForMultipleChoice")) for a in architectures):
        return "task"
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return "masked-lm"
    return "encoder"


def _load_model(kind: str, source: str, revision: Optional[str], folder: Path):
    from transformers import AutoModelForMaskedLM, AutoModelForMultipleChoice, AutoModelForSequenceClassification

    from bortzoo.hub import load_encoder, load_weights

    if kind == "encoder":
        return load_encoder(source, revision)
    if kind in ("masked-lm", "candidate"):
        return load_weights(AutoModelForMaskedLM, "masked-LM model", source, revision)
    config = json.loads((folder / "config.json").read_text())
    multiple_choice = any(a.endswith("ForMultipleChoice") for a in config.get("architectures") or [])
    auto = AutoModelForMultipleChoice if multiple_choice else AutoModelForSequenceClassification
    return load_weights(auto, "task model", source, revision)


# -- listing ---------------------------------------------------------------------------------------
COLUMNS = ("name", "Hub id", "kind", "<D,A,H,I>", "params", "task", "by", "notes")


def rows() -> list[dict[str, str]]:
    out = []
    for entry in REGISTRY.values():
        arch = entry.shape
        params = arch.total_params(mlm_head=entry.kind in ("masked-lm", "candidate"), pooler=entry.kind == "task")
        out.append({"name": entry.name, "Hub id": entry.hub_id + (f"@{entry.revision}" if entry.revision else ""),
                    "kind": entry.kind, "<D,A,H,I>": arch.short(), "params": f"{params / 1e6:.1f}M",
                    "task": entry.task or "", "by": entry.by, "notes": entry.notes})
    return out


def markdown_table() -> str:
    """docs/zoo.md's zoo table (generated, never typed: a test compares the page with this)."""
    lines = ["| " + " | ".join(c.replace("<", "⟨").replace(">", "⟩") for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows():
        cells = [f"`{row[c]}`" if c in ("<D,A,H,I>", "Hub id") else row[c].replace("|", "\\|") for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def zoo_list(markdown: bool = False) -> None:
    """Print the zoo: every named checkpoint, its Hub id, kind, shape, size, task and notes.

    Args:
        markdown: Print the Markdown table docs/zoo.md holds instead of plain columns.
    """
    if markdown:
        print(markdown_table())
        return
    table = rows()
    shown = [c for c in COLUMNS if c != "notes"]
    widths = {c: max(len(c), *(len(r[c]) for r in table)) for c in shown}
    print("  ".join(c.ljust(widths[c]) for c in shown))
    for row in table:
        print("  ".join(row[c].ljust(widths[c]) for c in shown))
    print(f"\n{len(table)} checkpoints; load one with bortzoo.load(name). Notes: bortzoo zoo list --markdown")


def main() -> None:  # `python -m bortzoo.zoo` prints docs/zoo.md's table
    zoo_list(markdown=True)


if __name__ == "__main__":
    main()
