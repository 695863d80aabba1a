"""The benchmark tasks, one folder: every task's spec registered by name, its metrics, its leaderboard files
and the scores the Bort authors reported.

A spec (`bortzoo.tasks.spec.TaskSpec`) says where a task's data lives on the Hub, which splits it has and which
leaderboard column each evaluation split is, which columns hold the inputs, what the label is, which metrics
score it, and how one example becomes the text pairs a model reads. Data loading, metrics, results files,
leaderboard files and model cards all read these facts from here. Adding a task is adding a spec to one of
`glue.py`, `superglue.py`, `race.py`.
"""

from __future__ import annotations

from bortzoo.errors import BortzooError
from bortzoo.tasks.glue import GLUE_ALIASES, GLUE_SCORE_GROUPS, GLUE_TASKS
from bortzoo.tasks.race import RACE_ALIASES, RACE_TASKS
from bortzoo.tasks.spec import TaskSpec
from bortzoo.tasks.superglue import SUPERGLUE_ALIASES, SUPERGLUE_SCORE_GROUPS, SUPERGLUE_TASKS

__all__ = ["ALIASES", "SCORE_GROUPS", "TASKS", "TaskSpec", "get_task", "tasks_of"]


def _registry(*groups: tuple[TaskSpec, ...]) -> dict[str, TaskSpec]:
    tasks: dict[str, TaskSpec] = {}
    for spec in (spec for group in groups for spec in group):
        if spec.name in tasks:
            raise BortzooError(f"task {spec.name!r} is registered twice")
        tasks[spec.name] = spec
    for spec in tasks.values():  # a split read for another task says whether that task's labels are public
        for split in (*spec.validation, *spec.test):
            if split.task and split.labelled != tasks[split.task].test_labels:
                raise BortzooError(f"task {spec.name!r}: split {split} disagrees with task {split.task!r}'s test_labels")
    return tasks


TASKS: dict[str, TaskSpec] = _registry(GLUE_TASKS, RACE_TASKS, SUPERGLUE_TASKS)
ALIASES = {**RACE_ALIASES, **GLUE_ALIASES, **SUPERGLUE_ALIASES}
SCORE_GROUPS = {"glue": GLUE_SCORE_GROUPS, "superglue": SUPERGLUE_SCORE_GROUPS}


def get_task(name: "str | TaskSpec") -> TaskSpec:
    """The spec registered as `name` (case-insensitive; a few leaderboard spellings accepted)."""
    if isinstance(name, TaskSpec):
        return name
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in TASKS:
        raise BortzooError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[key]


def tasks_of(benchmark: str) -> list[TaskSpec]:
    return [spec for spec in TASKS.values() if spec.benchmark == benchmark]
