"""Streaming an upload to disk: a raw body or the first file of a ``multipart/form-data`` body.

Nothing is buffered whole: chunks go to the destination file as they arrive, the byte limit is checked
as they come (413), and a malformed body, a part header over ``MAX_PART_HEADER`` bytes or a body
without a file is a 400 with the usual ``{"error", "advice"}`` answer, never a server error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from python_multipart.exceptions import ParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from dslrify.serve.state import ApiError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_PART_HEADER = 16 * 1024  # bytes of one part's headers; a browser sends a few hundred
MULTIPART_FRAMING = 64 * 1024  # allowance for boundaries, part headers and small form fields


class TooLarge(Exception):
    """Raised from inside the upload stream when the byte limit is passed."""


class _FirstFile:
    """Callbacks for python-multipart's parser: write the first part that carries a filename to ``dest``."""

    def __init__(self, dest: BinaryIO, limit: int) -> None:
        self.dest, self.limit = dest, limit
        self.field = self.value = b""
        self.headers: dict[bytes, bytes] = {}
        self.header_bytes = 0
        self.in_file = False
        self.name: str | None = None
        self.size = 0
        self.done = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def _count(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > MAX_PART_HEADER:
            raise ApiError(
                400,
                f"a part header of the upload is longer than {MAX_PART_HEADER // 1024} kB",
                "send the photo as an ordinary multipart file field",
            )

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self.field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self.value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.field.lower()] = self.value
        self.field = self.value = b""

    def on_headers_finished(self) -> None:
        _, disp = parse_options_header(self.headers.get(b"content-disposition", b""))
        if b"filename" in disp and not self.done:
            self.in_file = True
            self.name = disp[b"filename"].decode("utf-8", "replace")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.size += end - start
            if self.size > self.limit:
                raise TooLarge
            self.dest.write(data[start:end])

    def on_part_end(self) -> None:
        self.done = self.done or self.in_file
        self.headers, self.header_bytes, self.in_file = {}, 0, False


async def stream_upload(request: Request, dest: BinaryIO, limit: int) -> str | None:
    """Write the uploaded file's bytes to ``dest``, at most ``limit`` bytes; returns its name if sent.

    Accepts ``multipart/form-data`` (first file field) or a raw body (name from ``?name=``).
    """
    ctype = request.headers.get("content-type", "")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + MULTIPART_FRAMING:
        raise TooLarge
    if not ctype.startswith("multipart/form-data"):
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge
            dest.write(chunk)
        if size == 0:
            raise ApiError(400, "the upload is empty", "send the photo's bytes as the request body")
        return request.query_params.get("name")

    _, params = parse_options_header(ctype)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "multipart upload without a boundary", "send the photo as form field 'file'")
    part = _FirstFile(dest, limit)
    received = 0
    try:
        parser = MultipartParser(boundary, part.callbacks())
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit + MULTIPART_FRAMING:  # form fields around the file count too
                raise TooLarge
            parser.write(chunk)
        parser.finalize()
    except ParseError as e:
        raise ApiError(
            400, f"the upload is not a valid multipart form ({e})", "send the photo as form field 'file'"
        ) from None
    if not part.done:
        raise ApiError(400, "the upload holds no file", "send the photo as a multipart file field")
    if part.size == 0:
        raise ApiError(400, f"{part.name or 'the upload'} is empty (0 bytes)", "pick the photo again")
    return part.name


async def save_upload(request: Request, dst: Path, limit: int) -> str:
    """Stream the upload to ``dst`` (413 beyond ``limit`` bytes); returns a plain name to show for it."""
    try:
        with open(dst, "wb") as f:
            name = await stream_upload(request, f, limit)
    except TooLarge:
        raise ApiError(
            413,
            f"the upload is larger than this server's limit of {limit / 1024**2:g} MB",
            "restart dslrify serve with a larger --max-upload-mb",
        ) from None
    return Path(name or "photo").name or "photo"  # never a path: a name to show and to derive downloads from
