"""Export a trained student as a transformers folder: safetensors, config, tokenizer.

The folder loads anywhere with `AutoModelForMaskedLM.from_pretrained`, and its MLM head works
(the released `amazon/bort` head was never converted and fills masks with junk). A new export
is written beside the old one and swapped in at the end, so a failed export loses nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator, Optional

import lightning as L

from bortzoo.errors import BortzooError


def save_quietly(model, folder: str | os.PathLike) -> None:
    """`save_pretrained` (safetensors) without transformers' per-save progress bar inside our own bars."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder, safe_serialization=True)
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def replacing_folder(out_dir: str | os.PathLike, what: str = "output") -> Iterator[Path]:
    """Yield an empty staging folder beside `out_dir`; on success it replaces `out_dir` in one rename, on any
    error it is removed and an earlier `out_dir` stays as it was."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BortzooError(f"{what} {str(out)!r} exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        previous = out.parent / f".{out.name}.previous-{os.getpid()}"
        if out.exists():
            out.rename(previous)
        staging.rename(out)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export_masked_lm(model, tokenizer, out_dir: str | os.PathLike) -> Path:
    """Write `model` (a transformers masked-LM) and `tokenizer` to `out_dir`, atomically."""
    with replacing_folder(out_dir, "export target") as staging:
        save_quietly(model, staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
    return Path(out_dir)


def export(checkpoint: str, out: str, tokenizer: Optional[str] = None) -> str:
    """Export a Student checkpoint (.ckpt) as a transformers masked-LM folder.

    Args:
        checkpoint: Lightning checkpoint of a `Student` (e.g. runs/.../checkpoints/last.ckpt).
        out: Folder to write (replaced atomically if it exists).
        tokenizer: Hub id or folder of the tokenizer to ship with the model; without it the
            folder has no tokenizer files.
    """
    from bortzoo.hub import load_tokenizer
    from bortzoo.modules import Student

    if not os.path.isfile(checkpoint):
        raise BortzooError(f"checkpoint {checkpoint!r} does not exist")
    try:
        student = Student.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    except (KeyError, RuntimeError, TypeError) as err:
        raise BortzooError(f"{checkpoint!r} is not a Student checkpoint: {str(err).splitlines()[0]}") from None
    tok = load_tokenizer(tokenizer) if tokenizer else None
    if tok is not None and len(tok) != student.arch.vocab_size:
        raise BortzooError(f"tokenizer {tokenizer!r} has {len(tok)} tokens but the model's vocabulary is "
                           f"{student.arch.vocab_size}")
    path = export_masked_lm(student.model, tok, out)
    print(f"exported {student.arch.short()} to {path}")
    return str(path)


def write_random_masked_lm(folder: str | os.PathLike, arch, seed: int = 0, tokenizer_dir: Optional[str] = None,
                           safetensors: bool = True, trained_head: bool = True, dtype=None) -> Path:
    """A random-weight masked-LM folder in the `amazon/bort` layout (BERT model type, RoBERTa
    tokenizer files, no tokenizer.json): the offline stand-in for a real checkpoint in tests,
    benchmarks and demos. `safetensors=False` writes the old `pytorch_model.bin` instead.

    `trained_head=True` gives the masked-LM head's LayerNorm and bias random values, as any trained head has
    (a stand-in for a teacher); False leaves them at their initial values, as amazon/bort's conversion did
    (`bortzoo.hub.untrained_mlm_head` recognises that). `dtype` (torch.float16) stores the weights in it."""
    import json

    import torch
    from transformers import BertForMaskedLM

    from bortzoo.data.tiny_tokenizer import TINY_TOKENIZER_DIR

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # reproducible weights, the caller's RNG untouched
        torch.manual_seed(seed)
        model = BertForMaskedLM(arch.to_bert_config())
        if trained_head:
            head = model.cls.predictions
            with torch.no_grad():
                for tensor in (head.transform.LayerNorm.weight, head.transform.LayerNorm.bias, head.bias):
                    tensor.add_(torch.randn_like(tensor) * 0.02)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(out)
    if not safetensors:
        (out / "model.safetensors").unlink()
        torch.save(model.state_dict(), out / "pytorch_model.bin")
    config = json.loads((out / "config.json").read_text())
    config.update(architectures=["BertForMaskedLM"], tokenizer_class="RobertaTokenizer")
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(Path(tokenizer_dir or TINY_TOKENIZER_DIR) / name, out / name)
    return out




class ExportTransformers(L.Callback):
    """At the end of `fit`, export the student with the data's tokenizer (rank zero only).

    Args:
        dirpath: Folder to write the transformers model to.
    """

    def __init__(self, dirpath: str):
        self.dirpath = dirpath

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.strategies import FSDPStrategy

        model = pl_module.model
        if isinstance(trainer.strategy, FSDPStrategy):
            # sharded weights: every rank takes part in gathering them (rank zero alone would hang or fail), then
            # rank zero writes an unwrapped copy
            state = trainer.strategy.lightning_module_state_dict()
            if trainer.is_global_zero:
                model = type(model)(model.config)
                model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
        if not trainer.is_global_zero:
            return
        tokenizer = getattr(trainer.datamodule, "tokenizer", None)
        path = export_masked_lm(model, tokenizer, self.dirpath)
        print(f"exported the trained model to {path}")
