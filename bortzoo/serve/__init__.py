"""Serving on a CPU: `optimize` (int8 linears, bf16 attention where native, a self-check), the int8 arithmetic
each CPU gets right (`int8`, `cpu`), the accuracy guard on a task's dev split (`task_guard`) and `bortzoo bench`."""
