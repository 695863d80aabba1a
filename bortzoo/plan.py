"""`bortzoo plan --config RECIPE`: what a pretraining or fine-tuning recipe will cost, before anything runs.

Compute and the memory of parameters are counted; the memory of activations is measured; time is projected:
- **FLOPs per step** are the matmul FLOPs of `Arch` (`encoder_flops`, the masked-LM head on the predicted positions
  only, a task head), times 3 for a trained model (forward, and a backward of twice the forward) and times 1 for
  the frozen teacher's forward.
- **Memory per device**, under DDP (every device holds everything): fp32 master weights, gradients and AdamW's two
  moments, 4 + 4 + 8 bytes per trainable parameter; the frozen teacher's fp32 weights, 4 bytes per parameter;
  and the activations autograd keeps for the backward. Those are measured on this CPU: one training forward (and
  loss) of the student at the recipe's sequence length and precision, at batch 1 and 2, the bytes of every saved
  tensor summed, with attention as GPUs run it (SDPA's flash kernel: no attention matrix kept). The difference is the cost of one more sequence (activations grow linearly with the batch);
  the rest is per step (autocast's low-precision copies of the weights). Measured at batch 1 and 2 and scaled
  to the recipe's batch, so a BERT-large recipe at sequence 512 costs seconds here, not 20 GB.
- **Time** is total FLOPs / (peak × MFU) per GPU kind. The peaks are NVIDIA's dense bf16/fp16 tensor-core figures
  (SXM parts, no sparsity); the MFU is an assumption (`--mfu`) until a GPU run measures bortzoo's own.
Extraction and Agora recipes run many short fits; plan one of their fine-tunes (Agora's `finetune` recipe) instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from bortzoo.arch import Arch, get_arch
from bortzoo.errors import BortzooError

# dense bf16/fp16 tensor-core peak FLOP/s and memory (GB) of one GPU, from NVIDIA's data sheets (SXM, no sparsity)
GPU_PEAKS = {"V100": 125e12, "A100": 312e12, "H100": 989e12, "H200": 989e12}
GPU_MEMORY_GB = {"V100": 32, "A100": 80, "H100": 80, "H200": 141}
DEFAULT_MFU = 0.35  # assumed, not measured: no GPU run of bortzoo has measured its model-FLOPs utilisation yet
PAPER_PRETRAIN_GPU_HOURS = 288  # Bort's pretraining cost as the paper states it (V100 class), BORT_FACTS
BYTES_PER_TRAINABLE = 4 + 4 + 8  # fp32 master weight, fp32 gradient, AdamW's two fp32 moments
BYTES_PER_FROZEN = 4  # the teacher is held in fp32 (bortzoo.modules.Teacher)
FSDP_SHARDINGS = ("FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD")  # torch's ShardingStrategy names
HALF_PRECISIONS = ("bf16-mixed", "16-mixed", "bf16-true", "16-true", "bf16", "16")


@dataclass
class Workload:
    """What one optimizer step of a recipe does, read from the recipe alone."""

    recipe: str
    kind: str  # "pretrain" or "finetune"
    model: Arch
    seq_len: int
    batch: int  # sequences of one device's micro-batch (a multiple-choice row counts its options)
    devices: int = 1
    nodes: int = 1
    accumulate: int = 1
    precision: str = "32-true"
    steps: Optional[int] = None
    teacher: Optional[Arch] = None
    predictions: int = 0  # masked positions per sequence (pretraining)
    classes: int = 0  # outputs of the task head (fine-tuning)
    notes: list[str] = field(default_factory=list)
    sharding: str = "DDP"  # or an FSDP sharding strategy: FULL_SHARD, SHARD_GRAD_OP, HYBRID_SHARD, NO_SHARD
    teacher_sharded: bool = False  # FSDP shards the teacher's layers too (DistillFSDPStrategy teacher: shard)

    @property
    def world(self) -> int:
        return self.devices * self.nodes

    @property
    def sequences_per_step(self) -> int:
        return self.batch * self.world * self.accumulate


# -- the recipe -------------------------------------------------------------------------------------
def _load(recipe: str) -> tuple[dict, str]:
    """(the recipe's YAML, the file it came from) for a path or a packaged recipe's name."""
    import yaml

    from bortzoo.resources import resolve_recipe

    path = resolve_recipe(recipe)
    try:
        config = yaml.safe_load(open(path, encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise BortzooError(f"{recipe}: not valid YAML ({err})") from None
    if not isinstance(config, dict):
        raise BortzooError(f"{recipe}: a recipe is a YAML mapping, got {type(config).__name__}")
    return config, path


def read_workload(recipe: str) -> Workload:
    """The workload of a Trainer recipe (a path or a packaged recipe's name)."""
    config, path = _load(recipe)
    if "model" not in config:
        raise BortzooError(f"{recipe}: a Trainer recipe (pretraining, fine-tuning) has a model: section; an extraction "
                           "or Agora recipe is planned as a whole by `bortzoo plan --config` (plan_search, plan_agora)")
    return workload_of(config, _shown(path), recipe)


def workload_of(config: dict, shown: str, recipe: str) -> Workload:
    """The workload of a Trainer recipe's YAML (`shown`: its name in the output, `recipe`: in errors)."""
    trainer = config.get("trainer") or {}
    model = config.get("model") or {}
    data = (config.get("data") or {}).get("init_args") or {}
    args = model.get("init_args") or {}
    common = dict(recipe=shown, devices=_count(trainer.get("devices", 1), "trainer.devices"),
                  nodes=int(trainer.get("num_nodes", 1)), accumulate=int(trainer.get("accumulate_grad_batches", 1)),
                  precision=str(trainer.get("precision", "32-true")), **_sharding(trainer.get("strategy", "auto")))
    class_path = str(model.get("class_path", ""))
    if class_path.endswith("Student"):
        return _pretrain(config, trainer, args, data, common)
    if class_path.endswith("TaskModel"):
        return _finetune(trainer, args, data, common)
    raise BortzooError(f"{recipe}: model.class_path {class_path!r} is neither bortzoo.modules.Student (pretraining) nor "
                       "bortzoo.modules.TaskModel (fine-tuning), the two kinds bortzoo plan knows")


def _sharding(strategy: Any) -> dict:
    """How the recipe's strategy holds weights, gradients and optimizer state: DDP (replicated) or an FSDP sharding."""
    name = strategy if isinstance(strategy, str) else str((strategy or {}).get("class_path", ""))
    args = (strategy.get("init_args") or {}) if isinstance(strategy, dict) else {}
    if "fsdp" not in name.lower():
        return {}
    distill = name.endswith("DistillFSDPStrategy")  # teacher: replicate keeps it out of FSDP; plain fsdp wraps it
    sharding = str(args.get("sharding_strategy", "FULL_SHARD")).upper()
    if sharding not in FSDP_SHARDINGS:
        raise BortzooError(f"trainer.strategy.init_args.sharding_strategy {sharding!r} is not one of "
                           f"{', '.join(FSDP_SHARDINGS)}")
    return {"sharding": sharding, "teacher_sharded": args.get("teacher", "shard") == "shard" if distill else True}


def _shown(path: str) -> str:
    """A packaged recipe as `recipes/NAME.yaml`, anything else by its file name: no path of this machine is printed."""
    from pathlib import Path

    from bortzoo.resources import recipes_dir

    resolved, packaged = Path(path).resolve(), recipes_dir().resolve()
    if resolved.is_relative_to(packaged):
        return f"recipes/{resolved.relative_to(packaged).as_posix()}"
    return resolved.name


def _count(devices: Any, key: str) -> int:
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, (list, tuple)) and devices:
        return len(devices)
    raise BortzooError(f"{key} must be a number of devices or a list of device ids to plan, got {devices!r}")


def shape_of(ref: str, revision: Optional[str] = None) -> Arch:
    """The shape of a model reference without downloading: a zoo name or a zoo entry's Hub id from the registry,
    anything else (a folder, a .ckpt, a cached Hub id) through `bortzoo.zoo.model_ref`."""
    from bortzoo.zoo import REGISTRY, model_ref

    by_hub_id = {entry.hub_id.lower(): entry for entry in REGISTRY.values()}
    entry = REGISTRY.get(ref) or by_hub_id.get(str(ref).lower())
    if entry is not None:
        return entry.shape
    try:
        return model_ref(ref, revision).arch()
    except BortzooError as err:
        raise BortzooError(f"bortzoo plan needs the shape of {ref!r}: {err}; give the recipe's arch, or a zoo name "
                           "(bortzoo zoo list)") from None


def _pretrain(config: dict, trainer: dict, args: dict, data: dict, common: dict) -> Workload:
    student = get_arch(args.get("arch", "bort"))
    teacher = None
    teacher_config = args.get("teacher")
    if teacher_config:
        source = (teacher_config.get("init_args") or {}).get("source")
        teacher = shape_of(source, (teacher_config.get("init_args") or {}).get("revision"))
    seq_len = int(data.get("seq_len", 512))
    probability, cap = float(data.get("mlm_probability", 0.15)), data.get("max_predictions", 80)
    predictions = max(1, round((seq_len - 2) * probability))  # a packed block: <s> ... </s> around ordinary tokens
    predictions = min(predictions, int(cap)) if cap is not None else predictions
    steps = int(trainer["max_steps"]) if int(trainer.get("max_steps", -1) or -1) > 0 else None
    notes = [] if steps else ["trainer.max_steps is not set: totals are per step only"]
    return Workload(kind="pretrain", model=student, teacher=teacher, seq_len=seq_len, batch=int(data.get("batch_size", 32)),
                    predictions=predictions, steps=steps, notes=notes, **common)


def _finetune(trainer: dict, args: dict, data: dict, common: dict) -> Workload:
    from bortzoo.tasks import get_task
    from bortzoo.tasks.spec import CHOICE, RANKING

    spec = get_task(args.get("task", "sst2"))
    model = args.get("model")
    shape = get_arch(args["arch"]) if model is None else shape_of(model, args.get("revision"))
    options = spec.num_choices if spec.kind == CHOICE else 1
    rows = int(data.get("batch_size", 32))
    notes = []
    if spec.kind == RANKING:
        notes.append(f"{spec.name} scores every candidate entity of a row: sequences per row vary, planned as one")
    max_length = int(data.get("max_length", 128))
    if max_length > shape.max_positions:
        raise BortzooError(f"data.init_args.max_length {max_length} exceeds the model's {shape.max_positions} positions")
    steps = None
    epochs = int(trainer.get("max_epochs", -1) or -1)
    if int(trainer.get("max_steps", -1) or -1) > 0:
        steps = int(trainer["max_steps"])
    elif epochs > 0 and spec.train_rows:
        train_rows = min(spec.train_rows, int(data["train_limit"])) if data.get("train_limit") else spec.train_rows
        world = common["devices"] * common["nodes"]
        steps = epochs * math.ceil(math.ceil(train_rows / (rows * world)) / common["accumulate"])
        notes.append(f"{epochs} epochs of {train_rows:,} training rows ({spec.dataset} {spec.config})")
    else:
        notes.append("no max_steps, and the training rows are unknown: totals are per step only")
    notes.append(f"sequences padded to at most max_length {max_length} (TaskData pads each batch to its longest)")
    return Workload(kind="finetune", model=shape, seq_len=max_length, batch=rows * options, steps=steps,
                    classes=max(1, spec.num_labels) if spec.kind not in (CHOICE, RANKING) else 1, notes=notes,
                    **common)


# -- compute ----------------------------------------------------------------------------------------
def head_flops(arch: Arch, positions: int) -> int:
    """Masked-LM head FLOPs on `positions` positions: the transform (H×H) and the vocabulary projection (H×V)."""
    return 2 * positions * arch.hidden * arch.hidden + 2 * positions * arch.hidden * arch.vocab_size


def flops_per_sequence(work: Workload) -> dict[str, int]:
    """Matmul FLOPs of one training sequence: the trained model ×3 (forward + backward), the teacher ×1."""
    model = work.model.encoder_flops(work.seq_len)
    if work.kind == "pretrain":
        model += head_flops(work.model, work.predictions)
    else:  # Bort's head on the first token: dense(H) then dense(classes)
        model += 2 * work.model.hidden * work.model.hidden + 2 * work.model.hidden * work.classes
    out = {"model": 3 * model}
    if work.teacher is not None:
        out["teacher"] = work.teacher.encoder_flops(work.seq_len) + head_flops(work.teacher, work.predictions)
    return out


def trainable_params(work: Workload) -> int:
    if work.kind == "pretrain":
        return work.model.total_params(mlm_head=True)
    return work.model.total_params(mlm_head=False) + work.model.hidden * work.model.hidden + work.model.hidden \
        + work.model.hidden * work.classes + work.classes


# -- memory: activations measured -----------------------------------------------------------------
def saved_tensor_bytes(step) -> int:
    """Bytes of the distinct storages autograd saves for the backward while `step()` runs (parameters excluded)."""
    import torch

    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        parameters = step()
    own = {p.untyped_storage().data_ptr() for p in parameters}
    return sum(size for pointer, size in seen.items() if pointer not in own)


def _training_step(work: Workload, batch: int):
    """A function running one training forward and loss of `work`'s trained model at `batch` sequences (random
    weights and tokens, train mode), under the recipe's precision; it returns the model's parameters."""
    import torch
    import torch.nn.functional as F
    from transformers import BertForMaskedLM, BertModel

    from bortzoo.modules.distill import distillation_loss
    from bortzoo.modules.mlm import masked_logits

    torch.manual_seed(0)
    arch, length = work.model, work.seq_len
    ids = torch.randint(5, arch.vocab_size, (batch, length))
    half = work.precision in HALF_PRECISIONS

    # attention as a GPU runs it (flash / memory-efficient SDPA keeps no attention matrix); on a CPU that is SDPA's
    # flash kernel, which needs attention dropout off: off for this measurement only
    config = arch.to_bert_config(attn_implementation="sdpa", attention_probs_dropout_prob=0.0)
    if work.kind == "pretrain":
        model = BertForMaskedLM(config).train()
        labels = torch.full((batch, length), -100)
        labels[:, 1:1 + work.predictions] = ids[:, 1:1 + work.predictions]
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
                logits, gold = masked_logits(model, inputs)
                if work.teacher is None:
                    F.cross_entropy(logits.float(), gold)
                else:
                    distillation_loss(logits, torch.randn(logits.shape[0], arch.vocab_size), gold, 0.1, 0.5, 2.0)
            return list(model.parameters())
    else:
        model = BertModel(config, add_pooling_layer=False).train()
        head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(arch.hidden, arch.hidden), torch.nn.Tanh(),
                                   torch.nn.Dropout(0.1), torch.nn.Linear(arch.hidden, work.classes)).train()

        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
                hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
                F.cross_entropy(head(hidden[:, 0]).float(), torch.zeros(batch, dtype=torch.long))
            return [*model.parameters(), *head.parameters()]
    return run


def activation_bytes(work: Workload) -> tuple[int, int]:
    """(bytes per sequence, bytes per step) of activations, measured at batch 1 and 2 on this CPU."""
    one = saved_tensor_bytes(_training_step(work, 1))
    two = saved_tensor_bytes(_training_step(work, 2))
    per_sequence = two - one
    return per_sequence, max(0, one - per_sequence)


# -- the plan ---------------------------------------------------------------------------------------
def estimate(work: Workload, mfu: float = DEFAULT_MFU, activations: Optional[tuple[int, int]] = None) -> dict:
    """Every figure of the plan, as plain data (`activations`: measured now unless given)."""
    if not 0 < mfu <= 1:
        raise BortzooError(f"--mfu must be within (0, 1], got {mfu}")
    per_sequence = flops_per_sequence(work)
    step_flops = sum(per_sequence.values()) * work.sequences_per_step
    tokens_per_step = work.sequences_per_step * work.seq_len
    per_seq_act, per_step_act = activations if activations is not None else activation_bytes(work)
    trainable = trainable_params(work)
    shards = {"FULL_SHARD": work.world, "SHARD_GRAD_OP": work.world, "HYBRID_SHARD": work.devices}.get(work.sharding, 1)
    if work.sharding == "SHARD_GRAD_OP":  # weights whole on every device, gradients and AdamW state sharded
        state = trainable * (4 + (BYTES_PER_TRAINABLE - 4) / shards)
    else:
        state = trainable * BYTES_PER_TRAINABLE / shards
    memory = {
        "weights, gradients, AdamW (fp32)": round(state),
        "activations": per_seq_act * work.batch + per_step_act,
    }
    if work.teacher is not None:
        teacher_bytes = work.teacher.total_params(mlm_head=True) * BYTES_PER_FROZEN
        if work.teacher_sharded and shards > 1:  # its layers sharded, embeddings and head replicated
            layers = work.teacher.depth * work.teacher.layer_params * BYTES_PER_FROZEN
            teacher_bytes += round(layers / shards) - layers
        memory["teacher weights (fp32, frozen)"] = teacher_bytes
    if shards > 1:  # FSDP gathers a layer's full weights for its forward and backward, prefetching the next one
        memory["FSDP: 2 layers gathered (fp32)"] = 2 * work.model.layer_params * 4
    total_flops = step_flops * work.steps if work.steps else None
    hours = {gpu: (total_flops / (peak * mfu) / 3600 if total_flops else None) for gpu, peak in GPU_PEAKS.items()}
    plan = {
        "recipe": work.recipe, "kind": work.kind, "model": work.model.short(),
        "teacher": work.teacher.short() if work.teacher else None,
        "model_params": trainable, "teacher_params": work.teacher.total_params(mlm_head=True) if work.teacher else 0,
        "seq_len": work.seq_len, "micro_batch": work.batch, "devices": work.world, "accumulate": work.accumulate,
        "precision": work.precision, "sharding": work.sharding, "steps": work.steps, "predictions": work.predictions,
        "flops_per_sequence": per_sequence, "flops_per_step": step_flops, "flops_total": total_flops,
        "tokens_per_step": tokens_per_step, "tokens_total": tokens_per_step * work.steps if work.steps else None,
        "memory_per_device": memory, "memory_per_device_total": sum(memory.values()),
        "activation_bytes_per_sequence": per_seq_act, "activation_bytes_per_step": per_step_act,
        "mfu": mfu, "gpu_peaks": GPU_PEAKS, "gpu_hours": hours, "notes": list(work.notes),
    }
    if work.kind == "pretrain" and work.teacher is not None:
        # what the paper's 288 V100 GPU-hours buy at this MFU with this recipe's step
        budget = PAPER_PRETRAIN_GPU_HOURS * 3600 * GPU_PEAKS["V100"] * mfu
        plan["paper"] = {"gpu_hours": PAPER_PRETRAIN_GPU_HOURS, "gpu": "V100",
                         "tokens": budget / (step_flops / tokens_per_step), "steps": budget / step_flops}
    return plan


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def format_plan(plan: dict) -> str:
    lines = [f"bortzoo plan: {plan['recipe']} ({plan['kind']})", ""]
    rows = [("model", f"{plan['model']}, {plan['model_params'] / 1e6:.1f} M trainable parameters")]
    if plan["teacher"]:
        rows.append(("teacher", f"{plan['teacher']}, {plan['teacher_params'] / 1e6:.1f} M frozen parameters"))
    step = (f"{plan['micro_batch']} sequences × {plan['devices']} device(s) × {plan['accumulate']} accumulated, "
            f"length {plan['seq_len']}")
    if plan["kind"] == "pretrain":
        step += f", {plan['predictions']} predicted positions each"
    rows += [("one step", step), ("precision", plan["precision"])]
    for part, flops in plan["flops_per_sequence"].items():
        what = "forward + backward" if part == "model" else "forward only"
        rows.append((f"FLOPs/sequence, {part}", f"{flops / 1e9:,.1f} G ({what})"))
    rows += [("FLOPs/step", f"{plan['flops_per_step'] / 1e12:,.2f} T"),
             ("tokens/step", f"{plan['tokens_per_step']:,}")]
    if plan["steps"]:
        rows += [("steps", f"{plan['steps']:,}"), ("tokens in total", f"{plan['tokens_total']:,}"),
                 ("FLOPs in total", f"{plan['flops_total']:.3e}")]
    for part, size in plan["memory_per_device"].items():
        rows.append((f"memory/device: {part}", _gib(size)))
    rows.append(("memory/device, total", _gib(plan["memory_per_device_total"])))
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines += ["", f"  projected GPU-hours at MFU {plan['mfu']:.0%} (dense bf16/fp16 peaks, NVIDIA data sheets):"]
    for gpu, hours in plan["gpu_hours"].items():
        fits = plan["memory_per_device_total"] <= GPU_MEMORY_GB[gpu] * 1e9
        when = (f"{hours:,.1f}" if hours >= 10 else f"{hours:.2g}") + " GPU-hours" if hours is not None else "per step only"
        lines.append(f"    {gpu:<5} peak {plan['gpu_peaks'][gpu] / 1e12:,.0f} TFLOP/s, {GPU_MEMORY_GB[gpu]} GB: {when}"
                     f"{'' if fits else '  (does not fit: lower the micro-batch, accumulate more)'}")
    if "paper" in plan:
        paper = plan["paper"]
        lines += ["", f"  the paper's {paper['gpu_hours']} {paper['gpu']} GPU-hours, at this MFU and this step, buy "
                      f"{paper['tokens'] / 1e9:,.2f} B tokens ({paper['steps']:,.0f} steps)"]
    lines += ["", "  activations: measured on this CPU (autograd's saved tensors at batch 1 and 2, attention as GPUs' flash "
                  "kernels keep it), scaled to the micro-batch; the MFU is assumed, not measured; memory is per device "
                  + ("under DDP (FSDP would shard the weights, gradients and AdamW state)" if plan["sharding"] == "DDP"
                     else f"under FSDP {plan['sharding']} over {plan['devices']} device(s)")]
    if plan["teacher"]:
        lines.append("  the teacher's own activations are freed layer by layer (no gradient); its logits on the predicted "
                     "positions are counted with the loss")
    lines += [f"  note: {note}" for note in plan["notes"]]
    return "\n".join(lines)


# -- many short fits: the architecture search and Agora ------------------------------------------------
def _hours(flops: float, mfu: float) -> dict[str, float]:
    return {gpu: flops / (peak * mfu) / 3600 for gpu, peak in GPU_PEAKS.items()}


def plan_search(config: dict, shown: str, mfu: float = DEFAULT_MFU,
                activations: Optional[tuple[int, int]] = None) -> dict:
    """An extraction recipe: the teacher fills its logit cache once, then every trained candidate (one per
    ε-partition) runs each θ set for the step budget on cached batches, and is evaluated on the held-out ones."""
    from bortzoo.extract.scoring import Measures, step_budget
    from bortzoo.extract.search import Space, build_candidates, plan_partitions

    data = config.get("data") or {}
    teacher = shape_of(str(config.get("teacher", "")))
    seq, batch = int(data.get("seq_len", 512)), int(data.get("batch_size", 32))
    probability, cap = float(data.get("mlm_probability", 0.15)), data.get("max_predictions", 80)
    predictions = max(1, round((seq - 2) * probability))
    predictions = min(predictions, int(cap)) if cap is not None else predictions
    archs = build_candidates(Space(**(config.get("space") or {})), teacher.vocab_size, seq)
    groups, _ = plan_partitions([Measures(a.total_params(), a.encoder_flops(seq)) for a in archs], archs,
                                float(config.get("epsilon", 0.0)))
    trained = [archs[g[0]] for g in groups]
    thetas = len(config.get("hparams") or [{}])
    steps = step_budget(float(config.get("epsilon", 0.0)), float(config.get("s", 1.0)),
                        float(config.get("budget_scale", 100.0)), int(config.get("min_steps", 10)),
                        int(config.get("max_steps", 1000)))
    train_batches, eval_batches = int(config.get("train_batches", 64)), int(config.get("eval_batches", 8))
    forward = {a: a.encoder_flops(seq) + head_flops(a, predictions) for a in trained}
    flops = {
        "teacher fills the cache": (train_batches + eval_batches) * batch * (teacher.encoder_flops(seq)
                                                                             + head_flops(teacher, predictions)),
        "surrogate training": sum(thetas * steps * batch * 3 * forward[a] for a in trained),
        "held-out evaluation": sum(thetas * eval_batches * batch * forward[a] for a in trained),
    }
    largest = max(trained, key=lambda a: (a.total_params(), a.encoder_flops(seq)))
    precision = str(config.get("precision") or "32-true")
    work = Workload(recipe=shown, kind="pretrain", model=largest, seq_len=seq, batch=batch, predictions=predictions,
                    precision=precision)
    per_sequence, per_step = activations if activations is not None else activation_bytes(work)
    memory = {f"largest candidate {largest.short()}: weights, gradients, AdamW (fp32)":
              largest.total_params(mlm_head=True) * BYTES_PER_TRAINABLE,
              f"largest candidate {largest.short()}: activations": per_sequence * batch + per_step}
    teacher_bytes = teacher.total_params(mlm_head=True) * BYTES_PER_FROZEN
    total = sum(flops.values())
    return {"recipe": shown, "kind": "search", "teacher": teacher.short(), "candidates": len(archs),
            "trained": len(trained), "epsilon": float(config.get("epsilon", 0.0)), "thetas": thetas, "steps": steps,
            "seq_len": seq, "micro_batch": batch, "predictions": predictions, "precision": precision,
            "flops": flops, "flops_total": total, "memory_per_device": memory,
            "memory_per_device_total": max(sum(memory.values()), teacher_bytes), "teacher_bytes": teacher_bytes,
            "mfu": mfu, "gpu_peaks": GPU_PEAKS, "gpu_hours": _hours(total, mfu)}


def plan_agora(config: dict, shown: str, mfu: float = DEFAULT_MFU,
               activations: Optional[tuple[int, int]] = None) -> dict:
    """An Agora recipe: the weak model fitted once, then one fine-tune per alive set per iteration (the alive sets
    shrink by ceil(drop × alive), at least one, per iteration). Which sets survive depends on their scores, so a
    trial is planned at the mean cost of the recipe's sets; the few rows each iteration adds are not counted."""
    import math

    import yaml

    from bortzoo.agora.trials import expand_sets
    from bortzoo.recipe import apply_overrides
    from bortzoo.resources import resolve_recipe

    def fine_tune(key: str, overrides_key: str, batch_size: Optional[int] = None) -> Workload:
        path = resolve_recipe(str(config[key]), key)
        base = apply_overrides(yaml.safe_load(open(path, encoding="utf-8")), config.get(overrides_key), overrides_key)
        if batch_size is not None:
            base = apply_overrides(base, {"data.init_args.batch_size": batch_size}, "a set's batch_size")
        return workload_of(base, _shown(path), str(config[key]))

    sets = expand_sets(config.get("grid"), config.get("sets"), config.get("sample"), int(config.get("seed", 0)))
    drop, limit = float(config.get("drop", 0.5)), config.get("max_iterations")
    schedule, alive = [], len(sets)
    while alive and (limit is None or len(schedule) < int(limit)):
        schedule.append(alive)
        alive -= max(1, math.ceil(drop * alive))
    # each set's batch size changes a trial's steps and memory; its other values (lr, seed, ...) do not
    estimates, given = [], activations
    for values in sets:
        batch_size = values.get("batch_size")
        estimates.append(estimate(fine_tune("finetune", "finetune_overrides", batch_size), mfu, activations))
        activations = (estimates[-1]["activation_bytes_per_sequence"], estimates[-1]["activation_bytes_per_step"])
    per_trial = sum(e["flops_total"] or 0 for e in estimates) / len(estimates)
    parts = {"trials": per_trial * sum(schedule)}
    memory = max(e["memory_per_device_total"] for e in estimates)
    weak = None
    if not str(config.get("weak_model", "")).endswith(".ckpt"):  # a recipe, fitted first (a .ckpt is already trained)
        weak = estimate(fine_tune("weak_model", "weak_overrides"), mfu, given)
        parts["weak model, fitted once"] = weak["flops_total"] or 0
        memory = max(memory, weak["memory_per_device_total"])
    total = sum(parts.values())
    return {"recipe": shown, "kind": "agora", "sets": len(sets), "schedule": schedule, "trials": sum(schedule),
            "trial_recipe": estimates[0]["recipe"], "trial_flops": per_trial, "trial_steps": [e["steps"] for e in estimates],
            "weak_recipe": weak["recipe"] if weak else None, "flops": parts, "flops_total": total,
            "memory_per_device_total": memory, "parallel": int(config.get("parallel", 1)), "mfu": mfu,
            "gpu_peaks": GPU_PEAKS, "gpu_hours": _hours(total, mfu)}


def _hours_lines(result: dict) -> list[str]:
    lines = [f"  projected GPU-hours at MFU {result['mfu']:.0%} (dense bf16/fp16 peaks, NVIDIA data sheets):"]
    for gpu, hours in result["gpu_hours"].items():
        fits = result["memory_per_device_total"] <= GPU_MEMORY_GB[gpu] * 1e9
        when = f"{hours:,.1f}" if hours >= 10 else f"{hours:.2g}"
        lines.append(f"    {gpu:<5} peak {result['gpu_peaks'][gpu] / 1e12:,.0f} TFLOP/s, {GPU_MEMORY_GB[gpu]} GB: {when} "
                     f"GPU-hours{'' if fits else '  (does not fit: lower the micro-batch)'}")
    return lines


def _table(title: str, rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in rows)
    return [title, ""] + [f"  {k:<{width}}  {v}" for k, v in rows] + [""]


def format_search(result: dict) -> str:
    rows = [("candidates", f"{result['candidates']} in the space; {result['trained']} trained (one per ε-partition, "
                           f"ε = {result['epsilon']:g}, the maximum point in its own)"),
            ("teacher", f"{result['teacher']}, its top logits cached once"),
            ("surrogate runs", f"{result['thetas']} θ set(s) × {result['steps']:,} steps per trained candidate"),
            ("one step", f"{result['micro_batch']} sequences, length {result['seq_len']}, {result['predictions']} "
                         f"predicted positions each"),
            ("precision", result["precision"])]
    rows += [(f"FLOPs: {part}", f"{flops / 1e12:,.1f} T") for part, flops in result["flops"].items()]
    rows.append(("FLOPs in total", f"{result['flops_total']:.3e}"))
    rows += [(f"memory/device: {part}", _gib(size)) for part, size in result["memory_per_device"].items()]
    rows += [("memory/device: teacher while it fills the cache", _gib(result["teacher_bytes"])),
             ("memory/device, the larger", _gib(result["memory_per_device_total"]))]
    lines = _table(f"bortzoo plan: {result['recipe']} (architecture search)", rows) + _hours_lines(result)
    lines += ["", "  the GPU-hours are the sum over shards (--shard k/N divides the wall time by N); activations measured "
                  "on this CPU as for pretraining; the MFU is assumed, not measured"]
    return "\n".join(lines)


def format_agora(result: dict) -> str:
    steps = sorted(set(result["trial_steps"]))
    rows = [("hyperparameter sets", f"{result['sets']}; alive per iteration {', '.join(map(str, result['schedule']))} "
                                    f"= {result['trials']} trials"),
            ("a trial", f"{result['trial_recipe']}: {', '.join(f'{n:,}' for n in steps)} steps "
                        f"(by the sets' batch sizes), {result['trial_flops'] / 1e15:,.2f} PFLOPs on average")]
    if result["weak_recipe"]:
        rows.append(("weak model", f"{result['weak_recipe']}, fitted once"))
    rows += [(f"FLOPs: {part}", f"{flops:.3e}") for part, flops in result["flops"].items()]
    rows += [("FLOPs in total", f"{result['flops_total']:.3e}"),
             ("memory/device, the largest fit", _gib(result["memory_per_device_total"]))]
    lines = _table(f"bortzoo plan: {result['recipe']} (Agora)", rows) + _hours_lines(result)
    lines += ["", f"  trials run {result['parallel']} at a time (--parallel), one GPU each: the wall time divides by up "
                  "to that; which sets survive depends on their scores, so a trial is planned at the sets' mean cost; "
                  "the rows each iteration adds are not counted; the MFU is assumed, not measured"]
    return "\n".join(lines)


def plan(recipe: str, mfu: float = DEFAULT_MFU) -> dict:
    """Before a GPU run: FLOPs, tokens, memory per device and projected GPU-hours of a recipe: pretraining,
    fine-tuning, the architecture search or Agora.

    Args:
        recipe: The recipe: a path, or a packaged recipe's name (`bortzoo recipes`); `--config RECIPE` says the same.
        mfu: Model-FLOPs utilisation assumed for the projected time (a fraction of each GPU's dense bf16 peak).
    """
    if not 0 < mfu <= 1:
        raise BortzooError(f"--mfu must be within (0, 1], got {mfu}")
    config, path = _load(recipe)
    if "model" in config:
        result = estimate(workload_of(config, _shown(path), recipe), mfu)
        print(format_plan(result))
    elif "space" in config or "teacher" in config:
        result = plan_search(config, _shown(path), mfu)
        print(format_search(result))
    elif "finetune" in config:
        result = plan_agora(config, _shown(path), mfu)
        print(format_agora(result))
    else:
        raise BortzooError(f"{recipe}: neither a Trainer recipe (model:), an extraction recipe (teacher:, space:) nor an "
                           "Agora recipe (finetune:)")
    return result
