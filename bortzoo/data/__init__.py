"""What feeds the Trainer: the pretraining corpus (`corpus`) and a benchmark task's rows (`rows`), encoding
(`encoding`) and DataModule (`TaskData`), plus the generators of the tiny corpus, tokenizer and task datasets."""

from bortzoo.data.task_data import TaskData

__all__ = ["TaskData"]
