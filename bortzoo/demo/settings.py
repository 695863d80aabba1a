"""What the demo serves: which checkpoint answers each task on each side, and where data and results live.

By default every task checkpoint in the zoo registry is offered on the side its shape belongs to (today:
the community BERT-large GLUE fine-tunes; bortzoo's own Bort fine-tunes join as they are published).
`bortzoo demo --bort sst2=runs/finetune/glue/sst2-bort/hub` (or the same keys in a YAML given with `--config`)
adds or replaces a checkpoint with a local folder or Hub id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Union

from bortzoo.arch import Arch, get_arch
from bortzoo.demo import SIDES
from bortzoo.errors import BortzooError
from bortzoo.tasks import TASKS, get_task

# The architectures whose latency the demo measures: the real shapes, whatever checkpoints are loaded.
PRESETS = {"BERT-large": "bert-large", "Bort": "bort"}
# Where to get a checkpoint that is missing, per side (shown in the prediction boxes).
HOW_TO_GET = {
    "BERT-large": "Fine-tune one with `bortzoo fit --config recipes/finetune/{benchmark}/{task}-bert-large.yaml`, "
                  "publish it with `bortzoo publish RUN_DIR`, and start the demo with `--bert_large {task}=FOLDER`.",
    "Bort": "The zoo has no Bort fine-tunes yet. Fine-tune one with `bortzoo fit --config "
            "recipes/finetune/{benchmark}/{task}-bort.yaml`, publish it with `bortzoo publish RUN_DIR`, and start "
            "the demo with `--bort {task}=FOLDER`.",
}

Assignments = Union[Mapping[str, str], Sequence[str], None]


@dataclass(frozen=True)
class DemoSettings:
    """Everything the demo needs, checked before any model is built.

    Args:
        checkpoints: side → task → model reference (zoo name, Hub id or folder).
        latency_archs: side → the architecture timed in the latency panel.
        data: task → a folder laid out like the task's Hub dataset, for "evaluate now" (else the Hub).
        results: side → extra `results.json` files or run folders whose dev numbers join the accuracy table.
        threads: torch threads for predictions (the latency panel picks its own).
        max_length: tokens per sequence for predictions; longer input is truncated, and the box says by how much.
        keep_tasks: how many tasks' model pairs stay in memory (BERT-large is 1.3 GB per task).
        load_wait: seconds a request waits for its models to finish loading before answering "still loading".
        optimized_bort: serve Bort's predictions through `bortzoo.optimize(engine="auto")` (the fastest engine that
            holds its check on this CPU); its box names the engine.
    """

    checkpoints: dict[str, dict[str, str]]
    latency_archs: dict[str, Arch] = field(default_factory=lambda: {s: get_arch(p) for s, p in PRESETS.items()})
    data: dict[str, str] = field(default_factory=dict)
    results: dict[str, tuple[str, ...]] = field(default_factory=dict)
    threads: int = 1
    max_length: int = 128
    keep_tasks: int = 2
    load_wait: float = 300.0
    optimized_bort: bool = False

    def tasks(self) -> list[str]:
        """Tasks with a checkpoint on at least one side, in registry order (the task selector)."""
        offered = {task for side in SIDES for task in self.checkpoints.get(side, {})}
        return [name for name in TASKS if name in offered]

    def checkpoint(self, side: str, task: str) -> Optional[str]:
        return self.checkpoints.get(side, {}).get(task)


def zoo_checkpoints() -> dict[str, dict[str, str]]:
    """side → task → zoo name, for every task checkpoint in the registry whose shape is one of the sides'."""
    from bortzoo.zoo import REGISTRY

    shapes = {get_arch(preset).short(): side for side, preset in PRESETS.items()}
    out: dict[str, dict[str, str]] = {side: {} for side in SIDES}
    for entry in REGISTRY.values():
        side = shapes.get(entry.shape.short())
        if entry.kind == "task" and side is not None:
            out[side].setdefault(entry.task, entry.name)
    return out


def demo_fits(spec) -> bool:
    """Whether the page's boxes can hold the task's input: a text, a pair, or RACE's passage, question and
    options. COPA, MultiRC, ReCoRD, WiC and WSC read more columns (offsets, spans, entities) than a box holds."""
    return spec.pairs is None or spec.benchmark == "race"


def parse_assignments(value: Assignments, option: str, check_task: bool = True) -> dict[str, str]:
    """`{"sst2": "runs/x"}` or `["sst2=runs/x", ...]` → {task: value}; a malformed item names the option."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        items = [(str(k), str(v)) for k, v in value.items()]
    elif isinstance(value, str):
        items = [_split(value, option)]
    else:
        items = [_split(str(item), option) for item in value]
    out: dict[str, str] = {}
    for key, ref in items:
        if not ref.strip():
            raise BortzooError(f"{option}: task {key!r} has an empty value")
        name = get_task(key).name if check_task else key  # raises, naming the unknown task
        if check_task and option in ("--bort", "--bert_large") and not demo_fits(get_task(name)):
            raise BortzooError(f"{option}: the demo's input boxes take one text, a pair, or a passage with a "
                               f"question and options; task {name} reads {', '.join(get_task(name).text_fields)} "
                               f"(score it with bortzoo test instead)")
        out[name] = ref.strip()
    return out


def _split(item: str, option: str) -> tuple[str, str]:
    key, sep, ref = item.partition("=")
    if not sep or not key.strip():
        raise BortzooError(f"{option}: expected TASK=VALUE (e.g. sst2=runs/finetune/glue/sst2-bort/hub), got {item!r}")
    return key.strip(), ref


def build_settings(bert_large: Assignments = None, bort: Assignments = None, data: Assignments = None,
                   results: Union[Mapping[str, Sequence[str]], None] = None, zoo: bool = True,
                   threads: Optional[int] = None, max_length: int = 128, keep_tasks: int = 2,
                   latency_archs: Optional[Mapping[str, str]] = None, optimized_bort: bool = False) -> DemoSettings:
    """The demo's settings from the verb's options: the zoo's checkpoints (unless `zoo` is false) overlaid
    with the given ones; every value checked, with the option named in the error."""
    checkpoints = zoo_checkpoints() if zoo else {side: {} for side in SIDES}
    for side, given, option in (("BERT-large", bert_large, "--bert_large"), ("Bort", bort, "--bort")):
        refs = parse_assignments(given, option)
        for task, ref in refs.items():
            _check_ref(ref, f"{option} {task}={ref}")
        checkpoints[side].update(refs)
    data_dirs = parse_assignments(data, "--data")
    for task, folder in data_dirs.items():
        if not os.path.isdir(folder):
            raise BortzooError(f"--data: {task}={folder!r} is not a folder (expected one laid out like "
                               f"{get_task(task).dataset}, with a {get_task(task).config}/ config folder)")
    extra = {}
    for side, paths in (results or {}).items():
        if side not in SIDES:
            raise BortzooError(f"--results: side must be one of {SIDES}, got {side!r}")
        paths = [paths] if isinstance(paths, str) else list(paths)
        for path in paths:
            if not os.path.exists(path):
                raise BortzooError(f"--results: {side}: {path!r} does not exist")
        extra[side] = tuple(str(p) for p in paths)
    cpus = os.cpu_count() or 1
    threads = cpus if threads is None else threads
    for name, value, low, high in (("threads", threads, 1, cpus), ("max_length", max_length, 8, 4096),
                                   ("keep_tasks", keep_tasks, 1, 64)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise BortzooError(f"--{name} must be an integer from {low} to {high}, got {value!r}")
    archs = {side: get_arch(preset) for side, preset in PRESETS.items()}
    for side, spec in (latency_archs or {}).items():
        if side not in SIDES:
            raise BortzooError(f"latency_archs: side must be one of {SIDES}, got {side!r}")
        archs[side] = get_arch(spec)
    if not isinstance(optimized_bort, bool):
        raise BortzooError(f"--optimized_bort must be true or false, got {optimized_bort!r}")
    settings = DemoSettings(checkpoints=checkpoints, latency_archs=archs, data=data_dirs, results=extra,
                            threads=threads, max_length=max_length, keep_tasks=keep_tasks,
                            optimized_bort=optimized_bort)
    return settings


def _check_ref(ref: str, where: str) -> None:
    """A reference must be a folder, a zoo name or a Hub id: a mistyped path fails at start, not on first use."""
    from bortzoo.hub import is_hub_id
    from bortzoo.zoo import REGISTRY

    path = os.path.expanduser(ref)
    if os.path.exists(path) and not os.path.isdir(path):
        raise BortzooError(f"{where}: is a file; give a model folder, a zoo name or a Hub id")
    if not os.path.isdir(path) and ref not in REGISTRY and not is_hub_id(ref):
        raise BortzooError(f"{where}: no such folder, and not a zoo name or Hub id (`bortzoo zoo list`)")


def how_to_get(side: str, task: str) -> str:
    """What a user does to give `side` a checkpoint for `task` (the recipe that makes one exists)."""
    spec = get_task(task)
    return HOW_TO_GET[side].format(task=spec.name, benchmark=spec.benchmark)
