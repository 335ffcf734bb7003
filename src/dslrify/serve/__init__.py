"""``dslrify serve``: a local web page to enhance photos, compare before/after and download results.

Install the extra first: ``pip install 'dslrify[serve]'`` (FastAPI, uvicorn, python-multipart).
"""

from __future__ import annotations

from dslrify.serve.app import DEFAULT_SERVE_MAX_PIXELS, create_app

__all__ = ["DEFAULT_SERVE_MAX_PIXELS", "create_app"]
