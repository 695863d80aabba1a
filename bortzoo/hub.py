"""A Hub id or local folder to config, tokenizer and weights (what a reference *is* is decided by
`bortzoo.zoo.model_ref`; this module fetches and reads it).

The one place that downloads from the Hub. It fetches only what loading needs: configs,
tokenizer files, and one weight format, safetensors when the repo has it, otherwise
`pytorch_model.bin` (which transformers reads with `torch.load(weights_only=True)`, so no
pickle from the Hub is ever executed). TensorFlow, Flax and ONNX files are never fetched.

`amazon/bort` has the layout this must handle: `model_type: bert` in config.json with
RoBERTa tokenizer files (vocab.json, merges.txt) and a `tokenizer_class` naming RoBERTa.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Optional

from bortzoo.errors import BortzooError
from bortzoo.resources import project_path

# Files every load may need; one of the weight groups below is added.
META_PATTERNS = ["*.json", "*.txt", "*.model"]
SAFETENSORS_PATTERNS = ["*.safetensors", "*.safetensors.index.json"]
TORCH_BIN_PATTERNS = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")

_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")


def is_hub_id(ref: str) -> bool:
    """Whether `ref` has the shape of a Hub repo id ("name" or "org/name")."""
    return bool(_HUB_ID.match(ref)) and not ref.endswith((".", "-"))


def resolve(ref: str | os.PathLike, revision: Optional[str] = None, need_config: bool = True) -> Path:
    """A local folder holding the model `ref`: the folder itself, or a Hub snapshot of it.

    `need_config=False` accepts a tokenizer-only folder.
    """
    text = os.fspath(ref)
    if not text or not text.strip():
        raise BortzooError("empty model reference: give a Hub id (e.g. 'amazon/bort') or a local folder")
    path = Path(project_path(text)).expanduser()  # a recipe's bortzoo/assets/... from any folder
    if path.is_dir():
        return check_folder(path) if need_config else path
    if path.exists():
        raise BortzooError(f"model reference {text!r} is a file; expected a model folder or a Hub id")
    if not is_hub_id(text):
        raise BortzooError(f"model folder {text!r} does not exist (and it is not a valid Hub id)")
    snapshot = Path(_download(text, revision))
    return check_folder(snapshot, origin=f"Hub repo {text!r}") if need_config else snapshot


def _download(repo_id: str, revision: Optional[str]) -> str:
    """Snapshot the files needed to load `repo_id`; offline, fall back to the local cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        patterns = META_PATTERNS + _weight_patterns(repo_id, revision)
        return snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
    except GatedRepoError:
        raise BortzooError(f"Hub repo {repo_id!r} is gated: accept its terms on the Hub and log in "
                           "(`hf auth login`) first") from None
    except RepositoryNotFoundError:
        raise BortzooError(f"no Hub repo {repo_id!r} (or it is private and you are not logged in), "
                           f"and no local folder of that name") from None
    except RevisionNotFoundError:
        raise BortzooError(f"Hub repo {repo_id!r} has no revision {revision!r}") from None
    except NETWORK_ERRORS:
        pass
    try:  # unreachable or HF_HUB_OFFLINE=1: use what an earlier run cached
        return snapshot_download(repo_id, revision=revision, local_files_only=True,
                                 allow_patterns=META_PATTERNS + SAFETENSORS_PATTERNS + TORCH_BIN_PATTERNS)
    except (LocalEntryNotFoundError, *NETWORK_ERRORS):
        offline = " (HF_HUB_OFFLINE is set)" if _offline() else ""
        raise BortzooError(
            f"cannot load {repo_id!r}: it is not a local folder, the Hub is unreachable{offline}, and it is not "
            f"in the local Hugging Face cache. Download it once while online, or pass a local folder"
        ) from None


def _weight_patterns(repo_id: str, revision: Optional[str]) -> list[str]:
    """Safetensors if the repo has them, else PyTorch .bin; never both, never TF/Flax."""
    from huggingface_hub import HfApi

    files = [s.rfilename for s in HfApi().model_info(repo_id, revision=revision).siblings or []]
    if any(f.endswith(".safetensors") for f in files):
        return SAFETENSORS_PATTERNS
    if any(re.match(r"pytorch_model.*\.bin$", f) for f in files):
        return TORCH_BIN_PATTERNS
    return []  # configs/tokenizer only; loading weights will say what is missing


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def _network_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    errors: list[type[BaseException]] = [OfflineModeIsEnabled, HfHubHTTPError, ConnectionError, TimeoutError, OSError]
    import importlib

    for client in ("httpx", "httpx2"):  # huggingface_hub 1.x talks through httpx, 2.x through httpx2
        try:
            errors.append(importlib.import_module(client).HTTPError)
        except (ImportError, AttributeError):  # older huggingface_hub uses requests, whose errors are OSErrors
            pass
    return tuple(errors)


NETWORK_ERRORS = _network_errors()


def check_folder(path: Path, origin: Optional[str] = None) -> Path:
    """Fail early, naming the file, when a model folder lacks a readable config.json."""
    where = origin or f"model folder {str(path)!r}"
    config_file = path / "config.json"
    if not config_file.is_file():
        raise BortzooError(f"{where} has no config.json; a model folder needs config.json, weights and tokenizer files")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BortzooError(f"{config_file} is not valid JSON: {err}") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise BortzooError(f"{config_file} has no 'model_type'; is this a transformers model folder?")
    return path


def has_weights(path: Path) -> bool:
    return any((path / name).is_file() for name in WEIGHT_FILES)


def load_config(ref: str, revision: Optional[str] = None):
    """The transformers config of `ref`."""
    from transformers import AutoConfig

    path = resolve(ref, revision)
    try:
        return AutoConfig.from_pretrained(path)
    except (ValueError, KeyError, OSError) as err:
        raise BortzooError(f"cannot read the config of {ref!r} ({path}): {err}") from None


def load_tokenizer(ref: str, revision: Optional[str] = None):
    """The tokenizer of `ref`: for `amazon/bort`, RoBERTa's BPE from vocab.json + merges.txt."""
    from transformers import AutoTokenizer

    path = resolve(ref, revision, need_config=False)
    if not any((path / f).is_file() for f in ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model")):
        raise BortzooError(f"{ref!r} ({path}) has no tokenizer files (tokenizer.json, vocab.json + merges.txt, "
                           "or vocab.txt)")
    try:
        return AutoTokenizer.from_pretrained(path)
    except (ValueError, KeyError, OSError, TypeError) as err:
        raise BortzooError(f"cannot load the tokenizer of {ref!r} ({path}): {err}") from None


def load_masked_lm(ref: str, revision: Optional[str] = None, dtype=None, **kwargs: Any):
    """A masked-LM model from `ref` (BERT, RoBERTa, Bort...), weights from safetensors or a weights-only .bin;
    `dtype` (e.g. torch.float32) converts the weights after loading (see `_load_weights`)."""
    from transformers import AutoModelForMaskedLM

    return load_weights(AutoModelForMaskedLM, "masked-LM model", ref, revision, dtype, **kwargs)


def load_encoder(ref: str, revision: Optional[str] = None, dtype=None, **kwargs: Any):
    """The bare encoder of `ref` (no task head), for fine-tuning; same weight rules as `load_masked_lm`."""
    from transformers import AutoModel

    return load_weights(AutoModel, "encoder", ref, revision, dtype, **kwargs)


def load_weights(auto_class, what: str, ref: str, revision: Optional[str] = None, dtype=None, **kwargs: Any):
    """`auto_class.from_pretrained` on the resolved folder of `ref`, with bortzoo's errors.

    transformers 5 loads the dtype the checkpoint is stored in (`amazon/bort` was saved with `.half()`):
    `dtype` converts every floating weight afterwards, so training always starts from float32 master weights
    and an inference path runs in the dtype it names, whatever the file holds (`stored_dtype` says which).
    """
    path = resolve(ref, revision)
    if not has_weights(path):
        raise BortzooError(f"{ref!r} ({path}) has no weights: expected one of {', '.join(WEIGHT_FILES)}")
    try:
        model = auto_class.from_pretrained(path, **kwargs)
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        raise BortzooError(f"cannot load a {what} from {ref!r} ({path}): {err}") from None
    return model if dtype is None else model.to(dtype)


def stored_dtype(folder: str | os.PathLike) -> str:
    """The floating dtype a model folder stores its weights in (``float16``, ``float32``...), read from the
    safetensors header without loading any tensor; for a `.bin`, what config.json records; else ``unknown``."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    files = [folder / "model.safetensors"]
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        files = [folder / shard for shard in shards[:1]]
    if files and files[0].is_file():
        from safetensors import safe_open

        with safe_open(str(files[0]), "pt") as handle:
            kinds = {str(handle.get_slice(key).get_dtype()) for key in handle.keys()}
        floating = sorted(kinds & set(_SAFETENSORS_DTYPES))
        if floating:
            return "+".join(_SAFETENSORS_DTYPES[kind] for kind in floating)
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    if isinstance(config, dict):
        recorded = config.get("dtype") or config.get("torch_dtype")
        if isinstance(recorded, str) and recorded != "auto":
            return recorded.replace("torch.", "")
    return "unknown"


_SAFETENSORS_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}


def weight_names(folder: str | os.PathLike) -> set[str]:
    """The tensor names a model folder stores (safetensors headers or the .bin index; a single .bin is read
    weights-only), without building the model: what a checkpoint really holds, before transformers fills gaps
    with random values."""
    folder = Path(folder)
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            return set(json.loads((folder / index).read_text()).get("weight_map", {}))
    if (folder / "model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), "pt") as handle:
            return set(handle.keys())
    if (folder / "pytorch_model.bin").is_file():
        import torch

        return set(torch.load(folder / "pytorch_model.bin", map_location="meta", weights_only=True))
    return set()


# The masked-LM head's LayerNorm and output bias, under BERT's and RoBERTa's names.
_MLM_HEAD_AT_INIT = (("cls.predictions.transform.LayerNorm.weight", 1.0), ("cls.predictions.transform.LayerNorm.bias", 0.0),
                     ("cls.predictions.bias", 0.0))
_ROBERTA_HEAD_AT_INIT = (("lm_head.layer_norm.weight", 1.0), ("lm_head.layer_norm.bias", 0.0), ("lm_head.bias", 0.0))


def untrained_mlm_head(folder: str | os.PathLike) -> bool:
    """Whether the folder's masked-LM head still holds its initial values (LayerNorm weight 1, biases 0).

    No trained head keeps those exactly; `amazon/bort` does, because its conversion built BertForMaskedLM and
    copied only the encoder (so mask filling gives junk). Read from the weight files, so a local copy or a
    re-upload is recognised as well as the Hub id. False for a folder without a masked-LM head.
    """
    folder = Path(folder)
    names = weight_names(folder)
    for pattern in (_MLM_HEAD_AT_INIT, _ROBERTA_HEAD_AT_INIT):
        if all(name in names for name, _ in pattern):
            tensors = _read_tensors(folder, [name for name, _ in pattern])
            return all(tensors[name].float().eq(value).all().item() for name, value in pattern)
    return False


def _read_tensors(folder: Path, names: list[str]) -> dict:
    """Just the named tensors of a model folder (safetensors reads only those; a .bin is read weights-only)."""
    import torch

    index = next((folder / f for f in ("model.safetensors.index.json", "pytorch_model.bin.index.json")
                  if (folder / f).is_file()), None)
    files = {name: json.loads(index.read_text())["weight_map"][name] for name in names} if index else \
        {name: "model.safetensors" if (folder / "model.safetensors").is_file() else "pytorch_model.bin"
         for name in names}
    out = {}
    for file in set(files.values()):
        wanted = [name for name, f in files.items() if f == file]
        if file.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(str(folder / file), "pt") as handle:
                out.update({name: handle.get_tensor(name) for name in wanted})
        else:
            state = torch.load(folder / file, map_location="cpu", weights_only=True)
            out.update({name: state[name] for name in wanted})
    return out
