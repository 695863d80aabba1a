"""The optimal-subarchitecture search (FPTAS): measures, partitions, cached teacher, surrogate runs, report."""
