"""`TaskModel`: fine-tune any BERT/RoBERTa-style encoder on any registered benchmark task.

The encoder comes from a Hub id or folder (`amazon/bort`, `bert-large-cased`, `roberta-large`, an export of
ours), from a pretraining checkpoint of ours (`.ckpt` written by `Student`), or, for tiny recipes and
tests, from an `Arch` initialised at random. On top sits one head per task kind: classes, a regression
score, or one score per option of a multiple-choice row or per candidate of a ranking (ReCoRD). Metrics, names of splits and label names come
from the task spec.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from bortzoo.arch import Arch, get_arch
from bortzoo.errors import BortzooError
from bortzoo.modules.optim import adamw_with_warmup, encoder_depth, param_groups
from bortzoo.tasks import get_task
from bortzoo.tasks.metrics import split_score, task_metrics
from bortzoo.tasks.spec import MULTI_OPTION, RANKING, REGRESSION

HEADS = ("bort", "pooler")
METRIC_EXTRAS = ("groups", "candidates", "answers")  # batch entries metrics may read beside preds and labels


def ranking_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Negative log of the probability mass on the gold candidates (any of several may be right), over the
    rows that have one; padded candidates carry the lowest float, so they get no mass. A row without a gold
    candidate (its answer is not among the entities) cannot be learned from and adds nothing."""
    logits = logits.float()
    gold = labels > 0
    has_gold = gold.any(-1)
    if not has_gold.any():
        return logits.sum() * 0.0
    floor = torch.finfo(torch.float32).min
    total = torch.logsumexp(logits, -1)
    correct = torch.logsumexp(logits.masked_fill(~gold, floor), -1)
    return (total - correct)[has_gold].mean()


def load_student_checkpoint(path: str):
    """The encoder (BertModel) and tokenizer reference of a `Student` checkpoint, read weights-only."""
    from transformers import BertModel

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    arch = checkpoint.get("hyper_parameters", {}).get("arch")
    if arch is None:
        raise BortzooError(f"{path} is not a bortzoo pretraining checkpoint (no hyper_parameters.arch)")
    encoder = BertModel(get_arch(arch).to_bert_config(), add_pooling_layer=False)
    prefix = "model.bert."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BortzooError(f"{path}: the encoder weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    tokenizer = checkpoint.get("datamodule_hyper_parameters", {}).get("tokenizer")
    return encoder, tokenizer


class TaskModel(L.LightningModule):
    """An encoder with a task head, fine-tuned with AdamW, warm-up/decay, optional layer-wise LR decay.

    Args:
        task: Registered task name; must match the data's.
        model: Encoder to start from: a Hub id, a folder, or a `.ckpt` from bortzoo pretraining. None
            with `arch` set: a randomly initialised encoder (tiny recipes and tests). A task folder of
            the same task (from `bortzoo publish`) brings its trained head too.
        arch: Shape of a randomly initialised encoder (only when `model` is None).
        tokenizer: Tokenizer (Hub id or folder); by default the model's own (for a `.ckpt`, the
            tokenizer its pretraining data used).
        revision: Hub revision of `model`.
        head: ``bort``: dropout, dense(H)+tanh on the first token, dropout, dense(outputs), new weights,
            as the official Bort code. ``pooler``: the encoder's own pretrained pooler (BERT's next-sentence
            dense+tanh), then dropout and dense(outputs).
        dropout: Dropout of the head; None keeps the encoder config's hidden dropout.
        lr: Peak learning rate (of the head and top layer when `layer_decay` < 1).
        weight_decay: Decoupled weight decay (AdamW: lr·wd·w per step), none on biases and LayerNorm.
        warmup_ratio: Share of the steps with linear warm-up; linear decay to 0 after it.
        layer_decay: Layer-wise LR decay: layer i from the top learns at lr·layer_decay^i (1 = off).
        reinit_layers: Re-initialise the top N encoder layers (and the pooler) before fine-tuning; helps
            small datasets (Zhang et al. 2021, "Revisiting few-sample BERT fine-tuning").
        betas: AdamW betas.
        eps: AdamW epsilon.
    """

    #: The last evaluation, `{"stage", "splits": {board: {metric: value}}, "score"}`, set at each evaluation's end
    #: and read by `bortzoo.results.TaskResults` (the `TaskRun` it records).
    last_results: dict[str, Any]

    def __init__(
        self,
        task: str = "sst2",
        model: Optional[str] = "amazon/bort",
        arch: Optional[Union[str, Arch]] = None,
        tokenizer: Optional[str] = None,
        revision: Optional[str] = None,
        head: str = "bort",
        dropout: Optional[float] = None,
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        layer_decay: float = 1.0,
        reinit_layers: int = 0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
    ):
        super().__init__()
        self.spec = get_task(task)
        if head not in HEADS:
            raise BortzooError(f"head must be one of {HEADS}, got {head!r}")
        if (model is None) == (arch is None):
            raise BortzooError("give exactly one of model (a Hub id, folder or .ckpt to fine-tune) and arch (a "
                               "randomly initialised encoder)")
        if not 0.0 < layer_decay <= 1.0:
            raise BortzooError(f"layer_decay must be within (0, 1], got {layer_decay}")
        if not 0.0 <= warmup_ratio <= 1.0:
            raise BortzooError(f"warmup_ratio must be within [0, 1], got {warmup_ratio}")
        if self.spec.train is None:
            raise BortzooError(f"task {self.spec.name} has no training data: fine-tune {self.spec.predicted_by} "
                               "and predict it with that model")
        self.save_hyperparameters()
        if arch is not None:
            self.hparams["arch"] = get_arch(arch).as_dict()
        encoder, tokenizer_ref = self._build_encoder()
        # `from_pretrained` hands back eval mode (dropout off) in the checkpoint's dtype (amazon/bort: float16), and
        # Lightning keeps submodule modes as it finds them: fine-tune float32 master weights with dropout on; the
        # trainer's precision decides the compute dtype.
        self.encoder = encoder.to(torch.float32).train()
        self.tokenizer_ref = tokenizer or tokenizer_ref
        self.tokenizer = None
        if self.tokenizer_ref is not None:
            from bortzoo.hub import load_tokenizer

            self.tokenizer = load_tokenizer(self.tokenizer_ref)
        config = self.encoder.config
        self.num_layers = config.num_hidden_layers
        p = config.hidden_dropout_prob if dropout is None else dropout
        outputs = self.spec.num_labels
        if head == "bort":
            self.head = nn.Sequential(nn.Dropout(p), nn.Linear(config.hidden_size, config.hidden_size), nn.Tanh(),
                                      nn.Dropout(p), nn.Linear(config.hidden_size, outputs))
        else:
            if getattr(self.encoder, "pooler", None) is None:
                raise BortzooError(f"head 'pooler' needs an encoder with a pooler; {model or 'this arch'} has none: "
                                   "use head 'bort'")
            self.head = nn.Sequential(nn.Dropout(p), nn.Linear(config.hidden_size, outputs))
        self.head.apply(self._init_module)
        self.restored_head = self._restore_head()
        if reinit_layers:
            self._reinit_top(reinit_layers)
        self.metrics = nn.ModuleDict()
        for stage in ("validate", "test"):
            for index, item in enumerate(self.spec.eval_splits(stage)):
                self.metrics[f"{stage}_{index}"] = task_metrics(get_task(item.task) if item.task else self.spec)
        self.last_results: dict[str, Any] = {}

    # -- building ------------------------------------------------------------------------------------
    def _build_encoder(self):
        from transformers import BertModel

        from bortzoo.zoo import model_ref

        hp = self.hparams
        ref = model_ref(hp.model, hp.revision, hp.arch)
        if ref.kind == "arch":
            return BertModel(ref.shape.to_bert_config(), add_pooling_layer=hp.head == "pooler"), None
        if ref.kind == "checkpoint":
            encoder, tokenizer = load_student_checkpoint(ref.source)
            if hp.head == "pooler":
                raise BortzooError("a pretraining checkpoint has no pooler: use head 'bort'")
            return encoder, tokenizer
        from bortzoo.hub import load_encoder, stored_dtype, weight_names

        kwargs = {} if hp.head == "pooler" else {"add_pooling_layer": False}
        try:
            encoder = load_encoder(ref.source, ref.revision, **kwargs)
        except TypeError:  # encoders without the option (e.g. some non-BERT families)
            encoder = load_encoder(ref.source, ref.revision)
        folder = ref.folder()
        stored = stored_dtype(folder)
        if stored not in ("float32", "unknown"):
            rank_zero_info(f"{hp.model}: weights stored as {stored}; fine-tuned from float32 master weights "
                           "(trainer.precision sets the compute dtype)")
        if hp.head == "pooler" and not any(name.endswith("pooler.dense.weight") for name in weight_names(folder)):
            rank_zero_warn(f"head 'pooler': {hp.model} has no pretrained pooler weights, so the pooler (dense+tanh) "
                           "starts from random values: this is head 'bort' with one dropout less. Use head 'bort' "
                           "to say so, or a checkpoint with a pooler (BERT's next-sentence pooler)")
        return encoder, ref.source

    def _restore_head(self) -> bool:
        """Starting from a task folder of this task (`bortzoo publish` writes them), keep its trained head."""
        from bortzoo.convert import restore_head
        from bortzoo.zoo import model_ref

        ref = model_ref(self.hparams.model, self.hparams.revision, self.hparams.arch)
        return ref.kind == "pretrained" and restore_head(self, ref.folder())

    def run_facts(self) -> dict:
        """What this model was, for its run's results.json: where it started and the encoder's exact shape."""
        from bortzoo.arch import Arch

        return {"model": self.hparams.get("model") or f"random {get_arch(self.hparams.get('arch')).short()}",
                "head": self.hparams.get("head"), "arch": Arch.from_config(self.encoder.config).as_dict()}

    def _init_module(self, module: nn.Module) -> None:
        """BERT's initialisation: N(0, initializer_range) weights, zero biases, unit LayerNorm."""
        std = getattr(self.encoder.config, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def _reinit_top(self, count: int) -> None:
        layers = self.encoder.encoder.layer
        if not 0 < count <= len(layers):
            raise BortzooError(f"reinit_layers must be within 1..{len(layers)} for this {len(layers)}-layer encoder, "
                               f"got {count}")
        for layer in layers[-count:]:
            layer.apply(self._init_module)
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler.apply(self._init_module)

    # -- forward -------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: Optional[torch.Tensor] = None, option_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits [B, classes], scores [B] (regression) or option scores [B, options] (multiple choice, ranking;
        padded options, False in `option_mask`, score the lowest float so they are never chosen)."""
        shape = input_ids.shape
        flat = {"input_ids": input_ids.reshape(-1, shape[-1]), "attention_mask": attention_mask.reshape(-1, shape[-1])}
        if token_type_ids is not None and getattr(self.encoder.config, "type_vocab_size", 1) > 1:
            flat["token_type_ids"] = token_type_ids.reshape(-1, shape[-1])
        out = self.encoder(**flat)
        if self.hparams.head == "pooler":
            logits = self.head(out.pooler_output)
        else:
            logits = self.head(out.last_hidden_state[:, 0])
        if self.spec.kind in MULTI_OPTION:
            logits = logits.view(shape[0], shape[1])
            if option_mask is not None:
                logits = logits.float().masked_fill(~option_mask.bool(), torch.finfo(torch.float32).min)
            return logits
        if self.spec.kind == REGRESSION:
            return logits.squeeze(-1)
        return logits

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.spec.kind == REGRESSION:
            return F.mse_loss(logits.float(), labels.float())
        if self.spec.kind == RANKING:
            return ranking_loss(logits, labels)
        return F.cross_entropy(logits.float(), labels)

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        """Class ids (classes, choices) or scores (regression): what metrics and submission files take."""
        return logits.float() if self.spec.kind == REGRESSION else logits.argmax(-1)

    def _logits(self, batch: dict) -> torch.Tensor:
        return self(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"), batch.get("option_mask"))

    # -- steps ---------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self._logits(batch), batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def _eval_step(self, stage: str, batch: dict, dataloader_idx: int) -> None:
        logits = self._logits(batch)
        loss = self.loss(logits, batch["labels"])
        board = self.spec.eval_splits(stage)[dataloader_idx].board
        prefix = "val" if stage == "validate" else "test"
        self.log(f"{prefix}/{board}/loss", loss, batch_size=len(batch["labels"]), add_dataloader_idx=False,
                 sync_dist=True)
        extras = {key: batch[key] for key in METRIC_EXTRAS if key in batch}
        self.metrics[f"{stage}_{dataloader_idx}"].update(self.predictions(logits), batch["labels"], **extras)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("validate", batch, dataloader_idx)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch, dataloader_idx)

    def _eval_epoch_end(self, stage: str) -> None:
        """Compute each split's metrics, log them as `val/<board>/<metric>` and `val/score` (the mean of the
        splits' scores, two-metric splits averaged first: the column a checkpoint monitors). Diagnostics read
        from another task's data (SuperGLUE's AX-b and AX-g under RTE) are logged but not in the score."""
        prefix = "val" if stage == "validate" else "test"
        results: dict[str, dict[str, float]] = {}
        for index, item in enumerate(self.spec.eval_splits(stage)):
            collection = self.metrics[f"{stage}_{index}"]
            if not any(metric.update_called for metric in collection.values()):
                continue
            values = {name: float(value) for name, value in collection.compute().items()}
            collection.reset()
            results[item.board] = values
            for name, value in values.items():
                self.log(f"{prefix}/{item.board}/{name}", value, add_dataloader_idx=False, sync_dist=True)
        scored = [values for item in self.spec.eval_splits(stage) if item.task is None
                  for board, values in results.items() if board == item.board]
        if scored:
            score = sum(split_score(v) for v in scored) / len(scored)
            self.log(f"{prefix}/score", score, prog_bar=True, add_dataloader_idx=False, sync_dist=True)
            self.last_results = {"stage": stage, "splits": results, "score": score}

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("validate")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        out = {"ids": batch["ids"], "predictions": self.predictions(self._logits(batch)).cpu(), "split": dataloader_idx}
        if "candidates" in batch:  # a ranking's answer is the chosen candidate's text
            out["candidates"] = batch["candidates"]
        return out

    # -- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        hp = self.hparams
        top = self.num_layers + 1

        def depth(name: str) -> int:
            return encoder_depth(name[len("encoder."):], self.num_layers) if name.startswith("encoder.") else top

        groups = param_groups(self.named_parameters(), hp.lr, hp.weight_decay, depth=depth, max_depth=top,
                              layer_decay=hp.layer_decay)
        return adamw_with_warmup(groups, hp.lr, hp.betas, hp.eps, hp.warmup_ratio, self.trainer.estimated_stepping_batches)

    # -- checks --------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        spec = getattr(datamodule, "spec", None)
        if spec is not None and spec.name != self.spec.name:
            raise BortzooError(f"the model is set up for task {self.spec.name} but the data is {spec.name}: set "
                               "model.init_args.task and data.init_args.task alike")
        max_length = getattr(getattr(datamodule, "hparams", None), "max_length", None)
        positions = getattr(self.encoder.config, "max_position_embeddings", None)
        if max_length and positions and max_length > positions:
            raise BortzooError(f"data.max_length {max_length} exceeds the model's {positions} positions")
        if self.tokenizer is not None and len(self.tokenizer) > self.encoder.config.vocab_size:
            raise BortzooError(f"the tokenizer has {len(self.tokenizer)} tokens but the model's vocabulary only "
                               f"{self.encoder.config.vocab_size}")
