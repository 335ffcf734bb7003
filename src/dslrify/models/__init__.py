"""The architecture table: one explicit ``name -> class`` mapping, and ``build_model`` over it.

A new architecture is one file in this folder plus one line in ``ARCHITECTURES``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from dslrify.errors import ModelError
from dslrify.models.base import ContextInstanceNorm, EnhancementModel, ModelSpec, MomentsContext
from dslrify.models.detail import DetailEnhancer
from dslrify.models.discriminator import PatchDiscriminator
from dslrify.models.dped import DPEDDiscriminator, DPEDGenerator
from dslrify.models.guided import GuidedEnhancer
from dslrify.models.matched import MatchedEnhancer
from dslrify.models.ppcn import PPCNStudent, PPCNTeacher
from dslrify.models.unet import ResidualUNet
from dslrify.models.xia2018 import Xia2018Generator

# Values are nn.Module classes: all but the discriminators are EnhancementModels.
ARCHITECTURES: dict[str, type[nn.Module]] = {
    "unet": ResidualUNet,
    "dped": DPEDGenerator,
    "dped-discriminator": DPEDDiscriminator,
    "ppcn-teacher": PPCNTeacher,
    "ppcn-student": PPCNStudent,
    "patchgan": PatchDiscriminator,
    "guided": GuidedEnhancer,
    "detail": DetailEnhancer,
    "xia2018": Xia2018Generator,
    "matched": MatchedEnhancer,
}


def build_model(architecture: str, args: dict[str, Any] | None = None) -> nn.Module:
    """Instantiate ``architecture`` (a key of ``ARCHITECTURES``) with keyword ``args``."""
    if architecture not in ARCHITECTURES:
        valid = ", ".join(sorted(ARCHITECTURES))
        raise ModelError(f"unknown architecture {architecture!r}", f"valid architectures: {valid}")
    try:
        return ARCHITECTURES[architecture](**(args or {}))
    except TypeError as e:
        raise ModelError(f"wrong arguments for architecture {architecture!r}: {e}") from e


__all__ = [
    "ARCHITECTURES",
    "ContextInstanceNorm",
    "EnhancementModel",
    "ModelSpec",
    "MomentsContext",
    "build_model",
]
