"""Data: the pretraining corpus and the benchmark tasks."""

from bortzoo.data.task_data import TaskData

__all__ = ["TaskData"]
