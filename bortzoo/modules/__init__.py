"""LightningModules: the frozen `Teacher` and the `Student` built from any `Arch`."""

from bortzoo.modules.student import Student
from bortzoo.modules.teacher import Teacher

__all__ = ["Student", "Teacher"]
