"""The serving engines `bortzoo.optimize` chooses among: bortzoo's own torch path ("torch", `bortzoo.serve.own`)
and the peers a user would pick, each in its own module with the same contract (`base.Engine`): ONNX Runtime
("ort"), OpenVINO ("openvino") and CTranslate2 ("ctranslate2"), installed by `pip install 'bortzoo[serve]'`."""

from __future__ import annotations

import importlib

from bortzoo.errors import BortzooError
from bortzoo.serve.engines.base import Engine, EngineError

__all__ = ["ENGINE_NAMES", "PEERS", "EngineError", "peer"]

PEERS = {"ort": "bortzoo.serve.engines.ort", "openvino": "bortzoo.serve.engines.openvino",
         "ctranslate2": "bortzoo.serve.engines.ctranslate2"}
ENGINE_NAMES = ("torch", *PEERS)


def peer(name: str) -> Engine:
    """The peer engine called `name` (its module imports the engine's library only when it builds or loads)."""
    if name not in PEERS:
        raise BortzooError(f"unknown engine {name!r}; the engines are {', '.join(ENGINE_NAMES)} (or 'auto')")
    return importlib.import_module(PEERS[name]).ENGINE
