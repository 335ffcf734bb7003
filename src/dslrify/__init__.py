"""dslrify: turn phone photos into DSLR-quality photos with deep convolutional networks.

Public API::

    from dslrify import Enhancer, load_model
    Enhancer("default").enhance(pil_image)        # -> PIL image
    model = load_model("default")                 # nn.Module, NCHW RGB [0,1] -> NCHW [0,1]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from dslrify.enhancer import Enhancer
    from dslrify.zoo import load_model

__all__ = ["Enhancer", "__version__", "load_model"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `import dslrify.photo` (or `dslrify --version`) does not pay for torch.
    if name == "Enhancer":
        from dslrify.enhancer import Enhancer

        return Enhancer
    if name == "load_model":
        from dslrify.zoo import load_model

        return load_model
    raise AttributeError(f"module 'dslrify' has no attribute {name!r}")
