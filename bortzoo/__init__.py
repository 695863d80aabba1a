"""bortzoo: Bort (arXiv 2010.10499) end to end on Lightning: search, distillation, fine-tuning, publishing."""

from bortzoo.arch import PRESETS, Arch, get_arch, search_space
from bortzoo.errors import BortzooError

__version__ = "0.1.0"
__all__ = ["Arch", "BortzooError", "PRESETS", "get_arch", "load", "optimize", "search_space", "__version__"]



def __getattr__(name: str):
    """`bortzoo.load` (`bortzoo.zoo.load`) and `bortzoo.optimize` (`bortzoo.serve.optimize.optimize`),
    imported on first use: both pull in torch and transformers."""
    if name == "load":
        from bortzoo.zoo import load

        return load
    if name == "optimize":
        from bortzoo.serve.optimize import optimize

        return optimize
    raise AttributeError(f"module 'bortzoo' has no attribute {name!r}")
