"""dslrify: turn phone photos into DSLR-quality photos with deep convolutional networks.

Public API::

    from dslrify import Enhancer, load_model
    Enhancer("default").enhance(pil_image)        # -> PIL image
    model = load_model("default")                 # nn.Module, NCHW RGB [0,1] -> NCHW [0,1]
    look = fit_look(["a.jpg"], model="default")   # the model's colour transform as a 3D LUT
    look.save("look.cube"); Look.load("look.cube").apply(pil_image)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from dslrify.enhancer import Enhancer
    from dslrify.look import Look
    from dslrify.lookfit import fit_look
    from dslrify.zoo import load_model

__all__ = ["Enhancer", "Look", "__version__", "fit_look", "load_model"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `import dslrify.photo` (or `dslrify --version`) does not pay for torch.
    if name == "Enhancer":
        from dslrify.enhancer import Enhancer

        return Enhancer
    if name == "load_model":
        from dslrify.zoo import load_model

        return load_model
    if name == "Look":
        from dslrify.look import Look

        return Look
    if name == "fit_look":
        from dslrify.lookfit import fit_look

        return fit_look
    raise AttributeError(f"module 'dslrify' has no attribute {name!r}")
