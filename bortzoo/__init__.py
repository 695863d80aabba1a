"""bortzoo: Bort (arXiv 2010.10499) end to end on Lightning: search, distillation, fine-tuning, publishing."""

from bortzoo.arch import PRESETS, Arch, get_arch, search_space
from bortzoo.errors import BortzooError

__version__ = "0.1.0"
__all__ = ["Arch", "BortzooError", "PRESETS", "get_arch", "load", "search_space", "__version__"]


def load(ref: str, revision: str | None = None):
    """The ready (model, tokenizer) of a zoo name, Hub id or folder: see `bortzoo.zoo.load`."""
    from bortzoo.zoo import load as _load

    return _load(ref, revision)
