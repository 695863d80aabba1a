"""Agora (arXiv 2010.07990): fine-tuning that turns the best model's dev mistakes into new training rows.

`bortzoo agora --config recipes/agora/rte-bort.yaml` runs `bortzoo.agora.loop.agora`; the transformations
are in `bortzoo.agora.transforms`, the trials in `bortzoo.agora.trials`.
"""
