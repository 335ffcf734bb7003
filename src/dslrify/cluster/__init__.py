"""``dslrify enhance --ray``: millions of photos on a Ray cluster, resumable, nothing lost.

    from dslrify.cluster import enhance_dataset
    report = enhance_dataset(["s3://bucket/phone/"], "s3://bucket/dslr/", address="auto", recursive=True)
    print(report.summary())

The parts: :mod:`~dslrify.cluster.listing` (inputs → jobs, the CLI's rules), :mod:`~.storage` (local
paths and pyarrow filesystems; how outputs appear whole and are never replaced),
:mod:`~.worker` (the read tasks and the actor that loads the model once), :mod:`~.manifest` (JSON
Lines record, report), :mod:`~.pipeline` (the Ray Data pipeline, resources, backpressure, crashes).
Needs the ``[ray]`` extra: ``pip install 'dslrify[ray]'``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dslrify.cluster.listing import DatasetJob, DatasetPlan, plan_dataset
    from dslrify.cluster.manifest import DatasetReport, ManifestRow, read_manifest
    from dslrify.cluster.pipeline import enhance_dataset

# Loaded on first use: a read task imports dslrify.cluster.storage alone, without torch.
_WHERE = {
    "DatasetJob": "listing",
    "DatasetPlan": "listing",
    "plan_dataset": "listing",
    "DatasetReport": "manifest",
    "ManifestRow": "manifest",
    "read_manifest": "manifest",
    "enhance_dataset": "pipeline",
}
__all__ = [
    "DatasetJob",
    "DatasetPlan",
    "DatasetReport",
    "ManifestRow",
    "enhance_dataset",
    "plan_dataset",
    "read_manifest",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'dslrify.cluster' has no attribute {name!r}")
    try:
        module = importlib.import_module(f"dslrify.cluster.{_WHERE[name]}")
    except ImportError as e:  # pyarrow and ray come with the optional extra only
        from dslrify.errors import DslrifyError

        raise DslrifyError(
            f"running on Ray needs ray[data] and pyarrow ({e.name or e} is missing)",
            "pip install 'dslrify[ray]'",
        ) from e
    return getattr(module, name)
