"""LightningModules: the frozen `Teacher`, the `Student` built from any `Arch`, and the fine-tuned `TaskModel`."""

from bortzoo.modules.student import Student
from bortzoo.modules.task_model import TaskModel
from bortzoo.modules.teacher import Teacher

__all__ = ["Student", "TaskModel", "Teacher"]
