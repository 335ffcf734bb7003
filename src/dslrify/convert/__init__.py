"""Importers of other projects' released weights (TensorFlow checkpoints) into dslrify checkpoints.

``read_tf_checkpoint`` reads TensorFlow's tensor-bundle format without TensorFlow; ``import_dped`` and
``import_ppcn`` map DPED's and PPCN's variables onto ``DPEDGenerator`` / ``PPCNTeacher`` /
``PPCNStudent`` and write a self-describing checkpoint folder.
"""

from __future__ import annotations

from dslrify.convert.dped import import_dped
from dslrify.convert.ppcn import import_ppcn
from dslrify.convert.tf_checkpoint import list_tf_checkpoint, read_tf_checkpoint

__all__ = ["import_dped", "import_ppcn", "list_tf_checkpoint", "read_tf_checkpoint"]
