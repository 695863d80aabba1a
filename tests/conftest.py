"""Tests run offline with tiny everything: the project's own tokenizer, corpus and model folders."""

import json
import os
import shutil
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import pytest  # noqa: E402

from bortzoo.arch import Arch  # noqa: E402
from bortzoo.tokenizer import TINY_TOKENIZER_DIR  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY_CORPUS = REPO / "bortzoo" / "assets" / "tiny-corpus.txt"
TINY_ARCH = Arch(depth=2, heads=2, hidden=32, intermediate=64, vocab_size=512, max_positions=64)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir() -> str:
    return TINY_TOKENIZER_DIR


def make_bort_layout(folder: Path, arch: Arch = TINY_ARCH, seed: int = 0, safetensors: bool = True) -> Path:
    """A model folder laid out like `amazon/bort`: BERT model type, RoBERTa tokenizer files, no tokenizer.json."""
    import torch
    from transformers import BertForMaskedLM

    torch.manual_seed(seed)
    model = BertForMaskedLM(arch.to_bert_config())
    model.save_pretrained(folder)  # model.safetensors + config.json
    if not safetensors:  # the old PyTorch format of amazon/bort's main branch
        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["BertForMaskedLM"], tokenizer_class="RobertaTokenizer")
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(Path(TINY_TOKENIZER_DIR) / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def bort_layout_dir(tmp_path_factory) -> Path:
    return make_bort_layout(tmp_path_factory.mktemp("bort-layout"))
