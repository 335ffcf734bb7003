"""Reading and writing photos: the only package that opens or saves image files.

Rules, in and out:

* Formats: JPEG, PNG, TIFF and WebP; HEIC/HEIF with the optional ``pillow-heif``
  (``pip install 'dslrify[heic]'``). The output format comes from the destination's extension.
  Camera RAW and DNG files (``RAW_EXTENSIONS``) are read only, developed by :mod:`dslrify.raw`.
* Orientation: the EXIF (or XMP) orientation is applied on reading, as ``PIL.ImageOps.exif_transpose``
  does, and reset to 1 in the EXIF/XMP written out, so the result is upright in every viewer.
* Metadata: EXIF, XMP and the ICC profile are carried into the output. 16-bit TIFF output keeps only
  the main EXIF tags (camera, date, software), not the EXIF sub-IFD (tifffile cannot write it).
* Colour: pixels are processed in the source's own encoding and written back with the same embedded
  ICC profile, wide-gamut ones included (Adobe RGB, Display P3, ProPhoto). Nothing is converted to
  sRGB, so no colour is clipped and a colour-managed viewer shows the result as it shows the source.
* Bit depth: 16-bit PNG/TIFF are read at full precision (OpenCV/tifffile: Pillow reads 16-bit RGB PNG
  as 8 bit), kept as uint16 and written back at 16 bit as PNG/TIFF. JPEG/WebP output is 8 bit.
* Grayscale (L, LA, I;16, 1): given to the model as RGB (gray repeated) and written back as grayscale,
  the Rec.601 luma of the result (as ``convert("L")``). 16-bit gray+alpha PNG is written as RGBA.
* CMYK (JPEG/TIFF): converted to RGB through its ICC profile when it has one (the output is then
  tagged sRGB), else with Pillow's naive conversion (output untagged); always written as RGB.
* Palette (P, PA): converted to RGB, or RGBA when it has transparency; written as RGB(A).
* Alpha: never given to the model; passed through untouched, and dropped for JPEG (no alpha there).
* Limits: a photo of more than ``max_pixels`` (16-bit ones count twice) is refused from its header,
  before decoding, as is one whose header claims far more pixels than its file size can hold.
  A truncated file is refused unless ``allow_truncated``.
* Memory: ``Photo.pixels`` keeps the source's 8 or 16 bits; :func:`unit_float` makes float a tile at a
  time, and writing converts float results a band of rows at a time.
* Damage that viewers tolerate is repaired with one :class:`PhotoWarning` (damaged EXIF dropped, an
  unusable CMYK profile ignored); anything else is a one-line PhotoError.
* Writes are atomic (``files.atomic_path``): a temporary file in the destination folder, then a rename;
  the format is always given to the encoder, never guessed from the temporary's name.

Modules: ``core`` (the :class:`Photo` type, formats, limits, shared errors), ``metadata`` (EXIF, XMP,
orientation), ``decode`` (pixels from the decoders), ``read`` (checks, :func:`read_photo`, headers),
``convert`` (arrays and PIL images, quantisation) and ``write`` (:func:`write_photo`, the encoders).
Import from ``dslrify.photo``.
"""

from __future__ import annotations

from dslrify.photo.convert import _quantize, _quantize_rgb8, from_array, from_pil, to_array, to_pil
from dslrify.photo.core import (
    DEFAULT_MAX_PIXELS,
    RAW_EXTENSIONS,
    READ_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    Photo,
    PhotoInfo,
    PhotoWarning,
    format_for_extension,
    unit_float,
)
from dslrify.photo.decode import _heif_available
from dslrify.photo.read import (
    _ALWAYS_PLAUSIBLE,
    _MAX_PIXELS_PER_BYTE,
    _check_file,
    capture_time,
    inspect_photo,
    read_photo,
    read_photo_bytes,
    read_rgb,
)
from dslrify.photo.write import encode_photo, write_image, write_photo

# Private names too: dslrify.raw shares the header checks, tests reach the helpers.
__all__ = [
    "DEFAULT_MAX_PIXELS",
    "RAW_EXTENSIONS",
    "READ_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "Photo",
    "PhotoInfo",
    "PhotoWarning",
    "_ALWAYS_PLAUSIBLE",
    "_MAX_PIXELS_PER_BYTE",
    "_check_file",
    "_heif_available",
    "_quantize",
    "_quantize_rgb8",
    "capture_time",
    "encode_photo",
    "format_for_extension",
    "from_array",
    "from_pil",
    "inspect_photo",
    "read_photo",
    "read_photo_bytes",
    "read_rgb",
    "to_array",
    "to_pil",
    "unit_float",
    "write_image",
    "write_photo",
]
