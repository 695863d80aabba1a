"""A `TaskModel` as transformers' own task classes, and back.

Both our heads are BERT's: the ``bort`` head (dense+tanh on the first token, then a dense layer) is
exactly BERT's pooler followed by its classifier, and the ``pooler`` head *is* BERT's pooler and
classifier. So a fine-tuned model is saved as `BertForSequenceClassification` (classes, or one output
with ``problem_type: regression``) or `BertForMultipleChoice`, which load with the Auto classes
anywhere, and the same weights can be put back into a `TaskModel` to keep training or evaluate.

The pair template goes with it: a model fine-tuned with Bort's `<s> A </s> B </s>` gets a tokenizer
whose post-processor writes exactly that (the RoBERTa tokenizer class would rebuild its own two-separator
template on load, so the folder names the generic fast tokenizer class instead).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Optional

import torch
from lightning.pytorch.utilities import rank_zero_warn

from bortzoo.errors import BortzooError
from bortzoo.tasks.spec import MULTI_OPTION, REGRESSION, TaskSpec

SUPPORTED_MODEL_TYPES = ("bert",)


def hf_task_class(spec: TaskSpec):
    """The transformers class a model for `spec` is saved as."""
    from transformers import BertForMultipleChoice, BertForSequenceClassification

    return BertForMultipleChoice if spec.kind in MULTI_OPTION else BertForSequenceClassification


def hf_task_config(task_model):
    """The encoder's config, extended with the task: labels, problem type, classifier dropout."""
    spec = task_model.spec
    config = copy.deepcopy(task_model.encoder.config)
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise BortzooError(f"saving a task model as a transformers folder supports {SUPPORTED_MODEL_TYPES} encoders; "
                           f"this one is {config.model_type!r}")
    config.architectures = [hf_task_class(spec).__name__]
    config.num_labels = spec.num_labels
    if spec.kind == REGRESSION:
        config.problem_type = "regression"
        config.id2label, config.label2id = {0: "score"}, {"score": 0}
    elif spec.kind in MULTI_OPTION:
        config.id2label, config.label2id = {0: "score"}, {"score": 0}
    else:
        config.problem_type = "single_label_classification"
        config.id2label = dict(enumerate(spec.label_names))
        config.label2id = {name: index for index, name in enumerate(spec.label_names)}
    dropout = task_model.hparams.get("dropout")
    config.classifier_dropout = config.hidden_dropout_prob if dropout is None else dropout
    config.finetuning_task = spec.name
    return config


def head_state(task_model) -> dict[str, torch.Tensor]:
    """The head's weights under the transformers names (`bert.pooler.dense.*`, `classifier.*`)."""
    head = task_model.head
    if task_model.hparams.head == "bort":
        dense, out = head[1], head[4]
        pooler = {"bert.pooler.dense.weight": dense.weight, "bert.pooler.dense.bias": dense.bias}
    else:
        out = head[1]
        pooler = {f"bert.pooler.{k}": v for k, v in task_model.encoder.pooler.state_dict().items()}
    return {**pooler, "classifier.weight": out.weight, "classifier.bias": out.bias}


def to_hf(task_model):
    """A transformers model (BertForSequenceClassification / BertForMultipleChoice) equal to `task_model`."""
    config = hf_task_config(task_model)
    model = hf_task_class(task_model.spec)(config)
    state = {f"bert.{k}": v for k, v in task_model.encoder.state_dict().items() if not k.startswith("pooler.")}
    state.update(head_state(task_model))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise BortzooError(f"the task model does not map onto {type(model).__name__}: missing {missing[:4]}, "
                           f"unexpected {unexpected[:4]}")
    return model.eval()


def restore_head(task_model, folder: str | Path) -> bool:
    """Load the head of a task folder saved by `to_hf` into `task_model`; False (a new head is kept) when the
    folder is an encoder, a model of another task, or one whose head is not BERT's (RoBERTa's, say). The encoder
    was already loaded from the folder."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    architectures = config.get("architectures") or []
    if not any(a.endswith(("ForSequenceClassification", "ForMultipleChoice")) for a in architectures):
        return False
    if config.get("finetuning_task") != task_model.spec.name:
        return False  # another task's head: start a new one
    if config.get("model_type") not in SUPPORTED_MODEL_TYPES:  # e.g. RoBERTa's classifier.dense/out_proj head
        rank_zero_warn(f"{folder} is a {config.get('model_type')!r} model fine-tuned for {task_model.spec.name}; "
                       f"only the heads of {SUPPORTED_MODEL_TYPES} task folders are restored: a new head is trained")
        return False
    names = {int(k): v for k, v in (config.get("id2label") or {}).items()}
    labels = task_model.spec.label_names
    if labels and names and not all(str(v).startswith("LABEL_") for v in names.values()) \
            and [names.get(i) for i in range(len(labels))] != list(labels):
        raise BortzooError(f"{folder} names its labels {names}, task {task_model.spec.name} has {dict(enumerate(labels))}:"
                           " restoring its head would swap them")
    weights = folder / "model.safetensors"
    if weights.is_file():
        state = load_file(str(weights))
    elif (folder / "pytorch_model.bin").is_file():
        weights = folder / "pytorch_model.bin"
        state = torch.load(weights, map_location="cpu", weights_only=True)
    else:
        raise BortzooError(f"{folder} holds a task model but neither model.safetensors nor pytorch_model.bin (one "
                           "file) to restore its head from")
    classifier = state.get("classifier.weight")
    if classifier is None or classifier.shape[0] != task_model.spec.num_labels:
        found = None if classifier is None else classifier.shape[0]
        raise BortzooError(f"{folder} is a task model with {found} outputs; task {task_model.spec.name} needs "
                           f"{task_model.spec.num_labels}: fine-tune from its encoder with a new head instead")
    targets = head_state(task_model)
    with torch.no_grad():
        for name, target in targets.items():
            if name not in state:
                raise BortzooError(f"{weights} lacks {name}")
            target.copy_(state[name])
    return True


def bake_pair_template(tokenizer, template) -> Optional[object]:
    """A copy of `tokenizer` whose own pair encoding is `template` (a `bortzoo.data.task_data.Template`),
    or None when it already encodes pairs that way."""
    probe = tokenizer("a", "b")["input_ids"]
    a = tokenizer("a", add_special_tokens=False)["input_ids"]
    b = tokenizer("b", add_special_tokens=False)["input_ids"]
    if probe == [*template.start, *a, *template.middle, *b, *template.end]:
        return None
    from tokenizers.processors import TemplateProcessing

    baked = copy.deepcopy(tokenizer)
    backend = getattr(baked, "backend_tokenizer", None)
    if backend is None:
        raise BortzooError(f"cannot set the pair template of a slow tokenizer ({type(tokenizer).__name__})")

    def tokens(ids, type_id: int = 0) -> list[str]:
        return [f"{t}:{type_id}" if type_id else t for t in baked.convert_ids_to_tokens(list(ids))]

    start, middle, end = tokens(template.start), tokens(template.middle), tokens(template.end)
    second = template.second_type
    pair = [*start, "$A", *middle, f"$B:{second}" if second else "$B", *tokens(template.end, second)]
    ids = sorted({*template.start, *template.middle, *template.end})
    special = list(zip(baked.convert_ids_to_tokens(ids), ids))
    backend.post_processor = TemplateProcessing(single=[*start, "$A", *end], pair=pair,
                                                special_tokens=special)
    return baked


def save_tokenizer(tokenizer, folder: str | Path, template=None) -> None:
    """Save `tokenizer`; with a `template` it differs from, save it with that pair template baked in."""
    baked = bake_pair_template(tokenizer, template) if template is not None else None
    (baked or tokenizer).save_pretrained(folder)
    if baked is not None:  # keep the saved post-processor: load as the generic fast tokenizer class
        path = Path(folder) / "tokenizer_config.json"
        config = json.loads(path.read_text())
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
