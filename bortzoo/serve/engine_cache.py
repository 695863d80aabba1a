"""The on-disk cache of `bortzoo.optimize`: each engine's built artefact, and the choice `engine="auto"` made with
its measurements, so the second call for the same model on the same machine loads instead of building and timing.

An entry is keyed by everything that changes what is built or what is fastest: the model's weights (a hash of
every tensor) and config, the CPU (name, flags, and the emulation variables that limit kernels), and the
versions of torch, transformers, bortzoo and every engine library. Each file's SHA-256 is recorded next to it and
checked before use: an entry that is unreadable, incomplete, altered or written for other keys is reported and
rebuilt, never used. Writes go to a temporary folder renamed into place, so an interrupted build leaves no
half entry behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bortzoo.serve.cpu import cpu_flags, cpu_model, cpu_name

__all__ = [
    "FORMAT",
    "StaleEntry",
    "cache_root",
    "entry_folder",
    "file_digests",
    "key_of",
    "library_versions",
    "machine_key",
    "model_hash",
    "read_verified",
    "write_entry",
]

FORMAT = 1  # bumped when what an entry holds changes; entries of another format are rebuilt
MANIFEST = "manifest.json"
_ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS",
                  "CT2_FORCE_CPU_ISA", "MLAS_DYNAMIC_CPU_ARCH")
_LIBRARIES = ("torch", "transformers", "bortzoo", "onnxruntime", "onnx", "openvino", "nncf", "ctranslate2")
_log = logging.getLogger("bortzoo")


class StaleEntry(Exception):
    """A cache entry that must not be used; the message says why."""


def cache_root() -> Path:
    """$BORTZOO_CACHE, else $XDG_CACHE_HOME/bortzoo, else ~/.cache/bortzoo."""
    if os.environ.get("BORTZOO_CACHE"):
        return Path(os.environ["BORTZOO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bortzoo"


def model_hash(model: nn.Module) -> str:
    """SHA-256 of the model's class, config and every tensor of its state dict (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256(type(model).__qualname__.encode())
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):  # where it was loaded from is no part of the model
        fields = {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}
        digest.update(json.dumps(fields, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data if tensor.numel() else b"")
    return digest.hexdigest()


def machine_key() -> dict[str, Any]:
    """What about this machine decides which kernels run: CPU name, flags, architecture, emulation variables."""
    return {"cpu": cpu_name(), "model": cpu_model(), "machine": platform.machine(), "flags": sorted(cpu_flags()),
            "limits": {v: os.environ[v] for v in _ISA_VARIABLES if os.environ.get(v)}}


def library_versions() -> dict[str, str | None]:
    from bortzoo.serve.engines.base import package_versions

    return package_versions(_LIBRARIES)


def key_of(parts: Mapping[str, Any]) -> str:
    """A short stable hash of JSON-able parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def entry_folder(root: Path, model_digest: str, keys: Mapping[str, Any]) -> Path:
    """`root/engines/<model hash>/<hash of keys>`: one model's entries stay together, easy to delete."""
    return root / "engines" / model_digest[:24] / key_of(keys)


def file_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under `folder` except the manifest and the engine's runtime cache, by relative path."""
    from bortzoo.serve.engines.base import RUNTIME_CACHE

    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST and path.relative_to(folder).parts[0] != RUNTIME_CACHE:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    digest.update(block)
            out[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return out


def read_verified(folder: Path, keys: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's `data` of a complete, unaltered entry written for `keys`; StaleEntry (with the reason) else."""
    manifest_path = folder / MANIFEST
    if not folder.is_dir():
        raise StaleEntry("not built yet")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as err:
        raise StaleEntry(f"its {MANIFEST} is unreadable ({type(err).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StaleEntry(f"it was written in another format ({manifest.get('format') if isinstance(manifest, dict) else '?'})")
    recorded = manifest.get("keys")
    if recorded != json.loads(json.dumps(dict(keys), sort_keys=True, default=str)):
        changed = sorted(k for k in set(recorded or {}) | set(keys) if (recorded or {}).get(k) != keys.get(k))
        raise StaleEntry(f"it was built for other {', '.join(changed) or 'keys'}")
    digests = file_digests(folder)
    if digests != manifest.get("files"):
        expected = manifest.get("files") or {}
        bad = sorted(k for k in set(digests) | set(expected) if digests.get(k) != expected.get(k))
        raise StaleEntry(f"its files changed since it was written ({', '.join(bad[:3])})")
    return manifest.get("data") or {}


def write_entry(folder: Path, keys: Mapping[str, Any], data: Mapping[str, Any], build=None) -> None:
    """Write an entry atomically: `build(tmp)` fills a temporary sibling folder, the manifest records every
    file's digest, then the folder replaces any old entry in one rename."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        if build is not None:
            build(tmp)
        manifest = {"format": FORMAT, "keys": json.loads(json.dumps(dict(keys), sort_keys=True, default=str)),
                    "data": json.loads(json.dumps(dict(data), default=str)), "files": file_digests(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
