"""What every serving engine provides, so `bortzoo.optimize(engine=...)` can build, cache, time and guard them alike.

An engine runs a BERT encoder (embeddings + layers, no pooler, no task head) from an artefact it builds once
into a folder (an ONNX file, an OpenVINO IR, a CTranslate2 model). The pooler and task heads stay in torch,
fp32, around it (`bortzoo.serve.engines.wrapper`), so every model that holds a transformers BertModel is
served whatever its head. An engine never sees the caller's model: it gets `export_source(...)`, a plain
fp32 BertModel with eager attention (the attention every exporter traces), the caller's weights loaded.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from bortzoo.errors import BortzooError, first_line

__all__ = [
    "INPUT_NAMES",
    "OUTPUT_NAME",
    "Batch",
    "EncoderRunner",
    "Engine",
    "EngineError",
    "PositionalEncoder",
    "error_line",
    "example_batch",
    "export_source",
    "package_versions",
    "quiet",
]

# the encoder's inputs, every one int64 [batch, seq] (masks 1 = token, 0 = padding, padding left or right),
# and its output, fp32 [batch, seq, hidden]; values at padded positions are unspecified
# a subfolder of an artefact that an engine may fill when it loads (compiled kernels): not part of the artefact,
# so the cache neither checksums it nor calls the artefact changed when it grows
RUNTIME_CACHE = "runtime-cache"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"
Batch = Mapping[str, torch.Tensor]


class EngineError(BortzooError):
    """An engine cannot build or run this model here: the message names the engine and the reason."""

    def __init__(self, engine: str, reason: str) -> None:
        super().__init__(f"engine {engine!r}: {reason}")
        self.engine = engine
        self.reason = reason


class EncoderRunner(Protocol):
    """A loaded artefact: the encoder's last hidden state for a batch (INPUT_NAMES, int64 tensors)."""

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor) -> torch.Tensor: ...


class Engine(Protocol):
    """One serving engine. Schemes are the precisions and quantisation recipes it offers, in the order
    `engine="auto"` tries them (fastest first); the guard decides which hold."""

    name: str  # "ort", "openvino", "ctranslate2"
    schemes: tuple[str, ...]  # e.g. ("int8", "fp32")
    packages: tuple[str, ...]  # the pip distributions it needs (all in bortzoo's `serve` extra)
    # optional: `calibrated`, the schemes whose activation ranges are fixed from the calibration batches at build
    # time (static int8); auto offers them only with the caller's check batches, which then calibrate them

    def missing(self) -> str | None:
        """None when the engine can run here, else why not (e.g. "not installed: pip install bortzoo[serve]")."""

    def build(self, source: nn.Module, scheme: str, folder: Path, calibration: Sequence[Batch]) -> None:
        """Write this scheme's artefact for `source` (an `export_source` model) into the empty `folder`.

        calibration: a few representative batches (INPUT_NAMES), for schemes that fix activation ranges
        ahead of time. Raises EngineError naming the reason when the engine cannot convert the model."""

    def load(self, folder: Path, scheme: str, threads: int) -> EncoderRunner:
        """The runner for a built folder, with `threads` intra-op threads. Raises EngineError when the
        artefact cannot be loaded."""


def package_versions(packages: Sequence[str]) -> dict[str, str | None]:
    """Installed versions of these distributions (None where absent): part of every cache key."""
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def importable(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def export_source(bert: nn.Module) -> nn.Module:
    """A fp32 eval transformers BertModel without pooler and with eager attention, holding `bert`'s encoder
    weights (embeddings and layers): what every engine exports. `bert` is a transformers BertModel."""
    from transformers import BertConfig, BertModel
    from transformers.initialization import no_init_weights

    config = BertConfig.from_dict({**bert.config.to_dict(), "_attn_implementation": "eager"})
    config._attn_implementation = "eager"
    with no_init_weights():  # every weight is loaded below (a missing one raises): random init only costs time
        twin = BertModel(config, add_pooling_layer=False)
    state = {k: v for k, v in bert.state_dict().items() if not k.startswith("pooler.")}
    missing, unexpected = twin.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise BortzooError(f"the encoder's weights do not fit a plain BertModel: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    return twin.to(torch.float32).eval().requires_grad_(False)


def example_batch(config, batch: int = 2, seq: int = 16, seed: int = 0,
                  pad_left: bool = False) -> dict[str, torch.Tensor]:
    """Seeded token ids in the vocabulary (past the special tokens), row 0 padded after 2/3 of `seq`
    (at the start with pad_left), token types 0 then 1: a batch that exercises every input."""
    g = torch.Generator().manual_seed(seed)
    low = min(1000, config.vocab_size // 2)
    ids = torch.randint(low, config.vocab_size, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    keep = max(1, 2 * seq // 3)
    if pad_left:
        mask[0, : seq - keep] = 0
    else:
        mask[0, keep:] = 0
    types = torch.zeros_like(ids)
    if getattr(config, "type_vocab_size", 1) > 1:
        types[:, seq // 2:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


class PositionalEncoder(nn.Module):
    """(input_ids, attention_mask, token_type_ids) -> last_hidden_state: the plain positional-tensor signature
    the exporters trace, calling the transformers model with keywords."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state


def error_line(exc: BaseException) -> str:
    """"TypeName: first line of the message": how an engine's reason quotes a library's error."""
    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__


@contextlib.contextmanager
def _redirected_fds() -> Iterator[None]:
    """What C++ writes to file descriptors 1 and 2 goes to a scratch file for the duration (Python's own streams
    are flushed first so nothing of theirs is lost)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with tempfile.TemporaryFile() as sink:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


@contextlib.contextmanager
def quiet(*loggers: str, fds: bool = False) -> Iterator[None]:
    """While an engine converts or quantises: no warnings, no prints, no log records below errors from the root
    logger and the named ones (errors still raise). With `fds`, also nothing of what C++ writes to the process's
    stdout and stderr (an exporter's graph dump on failure)."""
    targets = [logging.getLogger(), *(logging.getLogger(name) for name in loggers)]
    levels = [logger.level for logger in targets]
    try:
        for logger in targets:
            logger.setLevel(logging.ERROR)
        with contextlib.ExitStack() as stack:
            if fds:
                stack.enter_context(_redirected_fds())
            stack.enter_context(warnings.catch_warnings())
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(targets, levels):
            logger.setLevel(level)
