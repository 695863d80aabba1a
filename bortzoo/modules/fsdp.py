"""FSDP for distillation: a frozen teacher inside the trained LightningModule (DESIGN.md, "FSDP and a frozen teacher").

FSDP flattens each wrap unit's parameters into one tensor, so a unit that mixes the frozen teacher with the
trained student either fails (``use_orig_params=False``) or allocates gradients for the teacher. Here every
unit holds parameters of one kind: each encoder layer (student and teacher) is a unit, the root unit holds the
student's embeddings and head, and what is left of the teacher is kept out of FSDP (`ignored_states`).

Not "the teacher as a whole unit": `Student` calls ``teacher.masked_logits``, never the teacher's ``forward``,
so such a unit is never gathered and its weights are read while sharded ("setStorage: ... out of bounds for
storage of size 0"). The teacher's layers are called through their forward by its encoder, so they can shard;
its embeddings and head (tied, ~52M params for RoBERTa-large) stay replicated.

``use_orig_params`` stays True (Lightning's default): `Student.configure_optimizers` groups parameters by name
(no decay on biases and LayerNorm) from ``self.model.named_parameters()``; with False that lists only the
nested units' flat parameters, silently leaving the root unit (embeddings, head) out of the optimiser. With
uniform units, True costs no gradient memory for the teacher: its flat parameters do not require grad.
"""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from bortzoo.errors import BortzooError

__all__ = ["DistillFSDPStrategy", "check_uniform_units", "encoder_layers", "fsdp_units", "wrap_plan"]

TeacherMode = Literal["shard", "replicate"]


def encoder_layers(module: nn.Module) -> list[nn.Module]:
    """The transformer layers: children of the ``layer`` ModuleList of any ``*encoder`` (BERT, RoBERTa, ...)."""
    layers = []
    for name, sub in module.named_modules():
        if (name == "encoder" or name.endswith(".encoder")) and isinstance(getattr(sub, "layer", None), nn.ModuleList):
            layers.extend(sub.layer)
    return layers


def frozen_teachers(module: nn.Module) -> list[nn.Module]:
    """The `Teacher` submodules of `module` (outermost only)."""
    from bortzoo.modules.teacher import Teacher

    found: list[nn.Module] = []
    for sub in module.modules():
        if isinstance(sub, Teacher) and not any(sub in t.modules() for t in found):
            found.append(sub)
    return found


def wrap_plan(module: nn.Module, teacher: TeacherMode = "shard") -> tuple[Any, list]:
    """(auto_wrap_policy, ignored_states) for `module`, a student that may hold a frozen `Teacher`.

    ``shard``: every encoder layer is a unit; the teacher's other parameters are ignored (replicated).
    ``replicate``: only the student's layers are units; the whole teacher is ignored (replicated).
    """
    from torch.distributed.fsdp.wrap import CustomPolicy

    if teacher not in ("shard", "replicate"):
        raise BortzooError(f"teacher must be 'shard' or 'replicate', got {teacher!r}")
    teachers = frozen_teachers(module)
    in_teacher = {id(p) for t in teachers for p in t.parameters()}
    layers = encoder_layers(module)
    if teacher == "replicate":
        layers = [m for m in layers if not any(id(p) in in_teacher for p in m.parameters())]
    wrapped = {id(m) for m in layers}
    sharded = {id(p) for m in layers for p in m.parameters()}
    if teacher == "replicate":  # whole modules, so their buffers stay out of FSDP too
        ignored: list = teachers
    else:
        ignored = [p for t in teachers for p in t.parameters() if id(p) not in sharded]
    return CustomPolicy(lambda m: id(m) in wrapped), ignored


def fsdp_units(wrapped: nn.Module) -> list[dict[str, Any]]:
    """Each FSDP unit of `wrapped`: its name, the requires_grad values of its original parameters, and numel."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    units = []
    for name, sub in wrapped.named_modules():
        handle = getattr(sub, "_handle", None) if isinstance(sub, FSDP) else None
        if handle is None:
            continue
        flat = handle.flat_param
        params = flat._params if flat._params is not None else [flat]  # originals only with use_orig_params
        units.append({"name": name or "<root>", "fqns": list(flat._fqns), "numel": sum(flat._numels),
                      "requires_grad": {p.requires_grad for p in params}, "flat_param": flat})
    return units


def check_uniform_units(wrapped: nn.Module) -> list[dict[str, Any]]:
    """`fsdp_units`, after raising if any unit mixes trainable and frozen parameters."""
    units = fsdp_units(wrapped)
    mixed = [u["name"] for u in units if len(u["requires_grad"]) > 1]
    if mixed:
        raise BortzooError(f"FSDP units mixing frozen and trainable parameters: {mixed}")
    return units


class DistillFSDPStrategy(FSDPStrategy):
    """Lightning's `FSDPStrategy` with the distillation wrap plan (`wrap_plan`) and a check that it held.

    Args:
        teacher: ``shard``: the teacher's layers are sharded as frozen units (least memory, one all-gather of
            them per step); ``replicate``: the teacher stays out of FSDP, a full frozen copy on every device
            (no communication for it).
        **kwargs: The other `FSDPStrategy` arguments (sharding_strategy, state_dict_type, ...).
    """

    def __init__(self, teacher: TeacherMode = "shard", **kwargs: Any):
        for fixed in ("auto_wrap_policy", "ignored_modules", "ignored_states"):
            if kwargs.get(fixed) is not None:
                raise BortzooError(f"DistillFSDPStrategy sets {fixed} itself (see bortzoo.modules.fsdp)")
        if kwargs.get("use_orig_params") is False:
            raise BortzooError("DistillFSDPStrategy needs use_orig_params=True: Student's optimiser groups "
                               "parameters by name (see bortzoo.modules.fsdp)")
        super().__init__(**kwargs)
        if teacher not in ("shard", "replicate"):
            raise BortzooError(f"teacher must be 'shard' or 'replicate', got {teacher!r}")
        self.teacher = teacher

    def _setup_model(self, model: nn.Module) -> nn.Module:
        policy, ignored = wrap_plan(model, self.teacher)
        self.kwargs["auto_wrap_policy"] = policy
        self.kwargs["ignored_states"] = ignored
        for t in frozen_teachers(model):  # FSDP moves only what it manages (model_to_device is a no-op here)
            t.to(self.root_device)
        if self.root_device.type != "cpu":
            wrapped = super()._setup_model(model)
        else:  # Lightning passes device_id=root_device.index, None on CPU, which torch refuses: "FSDP needs a
            # non-CPU accelerator device"; an explicit CPU device runs (gloo), which the tests use
            from torch.distributed.fsdp import FullyShardedDataParallel

            wrapped = FullyShardedDataParallel(model, cpu_offload=self.cpu_offload, device_id=self.root_device,
                                               mixed_precision=self.mixed_precision_config,
                                               sharding_strategy=self.sharding_strategy, **self.kwargs)
        check_uniform_units(wrapped)
        # Student checkpoints leave the teacher out, and FSDP loads through the wrapper, never through
        # Student.load_state_dict (which excuses those keys): excuse them here, for --ckpt_path resumes
        teachers = {id(t) for t in frozen_teachers(model)}
        names = tuple(f"{n}." for n, m in model.named_modules() if id(m) in teachers)
        wrapped.register_load_state_dict_post_hook(lambda module, keys: _excuse(keys.missing_keys, names))
        return wrapped


    def lightning_module_state_dict(self) -> dict[str, Any]:
        """Lightning's full state dict, gathered to rank zero; on CPU without the offload to CPU, on which torch's
        FSDP crashes (SIGSEGV) when the weights are already there."""
        if self._state_dict_type != "full" or self.root_device.type != "cpu":
            return super().lightning_module_state_dict()
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        config = FullStateDictConfig(offload_to_cpu=False, rank0_only=True)
        with FSDP.state_dict_type(self.model, StateDictType.FULL_STATE_DICT, state_dict_config=config):
            return self.model.state_dict()


def _excuse(missing: list[str], prefixes: tuple[str, ...]) -> None:
    missing[:] = [k for k in missing if not k.replace("_fsdp_wrapped_module.", "").startswith(prefixes)]
