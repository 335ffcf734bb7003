"""``dslrify serve``: a local web page to enhance photos, compare before/after and download results."""

from __future__ import annotations

from dslrify.serve.app import DEFAULT_SERVE_MAX_PIXELS, bind_socket, create_app, make_server, run_app

__all__ = ["DEFAULT_SERVE_MAX_PIXELS", "bind_socket", "create_app", "make_server", "run_app"]
