"""A pure-Python reader of TensorFlow's tensor-bundle checkpoints (``prefix.index`` + ``prefix.data-*``).

No TensorFlow needed. The format, as written by ``tensorflow/core/util/tensor_bundle/tensor_bundle.cc``:

- ``prefix.index`` is a LevelDB-style SSTable (``tensorflow/core/lib/io/table_format.txt``): data blocks
  of prefix-compressed ``key -> value`` entries with restart points, an index block mapping the last key
  of each data block to its ``BlockHandle`` (varint64 offset, varint64 size), and a 48-byte footer
  ending in the magic number ``0xdb4775248b80fb57``. Every block is followed by a 5-byte trailer: a
  compression type byte (0 = none, 1 = snappy) and the masked CRC32C of block + type byte.
- Keys are variable names, sorted; the empty key holds a ``BundleHeaderProto`` (num_shards, endianness,
  version). Every other value is a ``BundleEntryProto``: dtype (1), shape (2), shard_id (3), offset (4),
  size (5), crc32c (6, masked CRC32C of the raw bytes), slices (7, partitioned variables).
- ``prefix.data-{shard:05d}-of-{num_shards:05d}`` holds the raw tensor bytes, row-major, in the
  header's byte order.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from dslrify.errors import ModelError

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48  # two BlockHandles padded to 2 * 20 bytes, then the 8-byte magic
_TRAILER_LEN = 5  # compression type byte + masked crc32c

# TensorFlow's DataType enum (types.proto) -> numpy dtype, for the types whose bytes are plain arrays.
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("float32"),
    2: np.dtype("float64"),
    3: np.dtype("int32"),
    4: np.dtype("uint8"),
    5: np.dtype("int16"),
    6: np.dtype("int8"),
    9: np.dtype("int64"),
    10: np.dtype("bool"),
    17: np.dtype("uint16"),
    19: np.dtype("float16"),
    22: np.dtype("uint32"),
    23: np.dtype("uint64"),
}
_DT_STRING = 7
# Entries that are bookkeeping, not weights: TF2's object graph (a string tensor) and counters.
_BOOKKEEPING = ("_CHECKPOINTABLE_OBJECT_GRAPH", "global_step", "save_counter/.ATTRIBUTES/VARIABLE_VALUE")
# Name fragments of optimiser state (TF1 slot variables and TF2 object-based slots).
_SLOT_MARKERS = ("/Adam", "/Momentum", "/RMSProp", "/Adagrad", "/Adadelta", "/Ftrl", ".OPTIMIZER_SLOT")
_SLOT_NAMES = ("beta1_power", "beta2_power")


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lives: ``dtype`` is TF's enum value, ``crc32c`` the masked checksum."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None
    sliced: bool


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli polynomial, reflected
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, as LevelDB and TensorFlow compute it (about 6 MB/s)."""
    c = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB's checksum mask (stored CRCs are masked so that CRCs of CRCs do not look valid)."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; returns (value, position after it)."""
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Split a serialized protobuf message into (field number, value) pairs, in order.

    Varints and fixed32/fixed64 come back as ints, length-delimited fields as bytes.
    """
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            (value,) = struct.unpack_from("<Q", buf, pos)
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = bytes(buf[pos : pos + length])
            if len(value) != length:
                raise ValueError("truncated length-delimited field")
            pos += length
        elif wire == 5:
            (value,) = struct.unpack_from("<I", buf, pos)
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.append((number, value))
    return fields


def _int_field(fields: dict[int, int | bytes], number: int, default: int) -> int:
    """Numeric field `number` of a parsed message, `default` when absent."""
    value = fields.get(number, default)
    if isinstance(value, bytes):  # a length-delimited value where the schema has a number
        raise ValueError(f"field {number} holds bytes where a number is expected")
    return value


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 (Dim: int64 size = 1); unknown_rank = 3."""
    dims = []
    for number, value in _proto_fields(buf):
        if number == 2 and isinstance(value, bytes):
            dims.append(_int_field(dict(_proto_fields(value)), 1, 0))
        elif number == 3 and value:
            raise ValueError("tensor of unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> BundleEntry:
    f: dict[int, int | bytes] = {}
    sliced = False
    for number, value in _proto_fields(buf):
        if number == 7:
            sliced = True
        f[number] = value
    shape_buf = f.get(2)
    shape = _parse_shape(shape_buf) if isinstance(shape_buf, bytes) else ()
    return BundleEntry(
        name=name,
        dtype=_int_field(f, 1, 0),
        shape=shape,
        shard_id=_int_field(f, 3, 0),
        offset=_int_field(f, 4, 0),
        size=_int_field(f, 5, 0),
        crc32c=_int_field(f, 6, 0) if 6 in f else None,
        sliced=sliced,
    )


def _read_block(data: bytes, offset: int, size: int) -> bytes:
    """The contents of the block at (offset, size), its trailer checked."""
    end = offset + size
    if end + _TRAILER_LEN > len(data):
        raise ValueError("block extends past the end of the file")
    block = data[offset:end]
    kind = data[end]
    (stored,) = struct.unpack_from("<I", data, end + 1)
    if mask_crc(crc32c(data[offset : end + 1])) != stored:
        raise ValueError("block checksum mismatch")
    if kind == 1:
        raise ValueError("the index is snappy-compressed, which this reader does not support")
    if kind != 0:
        raise ValueError(f"unknown block compression type {kind}")
    return block


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Decode a block: entries (shared, non_shared, value_len varints, key delta, value), then the
    restart array (uint32 offsets) and its length (uint32). Keys share a prefix with the previous key,
    which restart points reset; a sequential scan only needs the ``shared`` counts.
    """
    if len(block) < 4:
        raise ValueError("block too short")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise ValueError("bad restart count")
    entries = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise ValueError("corrupt block entry")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def _index_path(prefix: str | os.PathLike) -> tuple[Path, str]:
    """Resolve ``prefix`` (a prefix, its ``.index`` file, or a folder holding one bundle)."""
    p = Path(prefix)
    if p.is_dir():
        found = sorted(p.glob("*.index"))
        if len(found) != 1:
            raise ModelError(
                f"{p} holds {len(found)} TensorFlow checkpoints (.index files), expected one",
                "pass the checkpoint prefix, e.g. models/iphone_orig",
            )
        p = found[0]
    if p.suffix == ".index":
        p = p.with_suffix("")
    index = Path(str(p) + ".index")
    if not index.is_file():
        raise ModelError(
            f"no TensorFlow checkpoint at {p}: {index.name} does not exist",
            "pass the prefix shared by the .index and .data-00000-of-00001 files (without suffix)",
        )
    return index, str(p)


def read_bundle_index(prefix: str | os.PathLike) -> tuple[dict[str, int], dict[str, BundleEntry]]:
    """Parse ``prefix.index``: returns (header, entries by name).

    ``header`` has ``num_shards``, ``endianness`` (0 little, 1 big) and ``version`` (producer).
    """
    index, _ = _index_path(prefix)
    data = index.read_bytes()
    try:
        if len(data) < _FOOTER_LEN:
            raise ValueError("file shorter than an SSTable footer")
        footer = data[-_FOOTER_LEN:]
        lo, hi = struct.unpack_from("<II", footer, _FOOTER_LEN - 8)
        if (hi << 32 | lo) != _TABLE_MAGIC:
            raise ValueError("bad magic number")
        _, pos = _varint(footer, 0)  # metaindex handle: TF writes no meta blocks
        _, pos = _varint(footer, pos)
        index_offset, pos = _varint(footer, pos)
        index_size, pos = _varint(footer, pos)
        raw: list[tuple[bytes, bytes]] = []
        for _, handle in _block_entries(_read_block(data, index_offset, index_size)):
            off, hpos = _varint(handle, 0)
            size, _ = _varint(handle, hpos)
            raw.extend(_block_entries(_read_block(data, off, size)))
        header: dict[str, int] = {"num_shards": 1, "endianness": 0, "version": 0}
        entries: dict[str, BundleEntry] = {}
        for key, value in raw:
            if key == b"":
                f = dict(_proto_fields(value))
                header["num_shards"] = _int_field(f, 1, 1)
                header["endianness"] = _int_field(f, 2, 0)
                version = f.get(3)
                if isinstance(version, bytes):
                    header["version"] = _int_field(dict(_proto_fields(version)), 1, 0)
                continue
            name = key.decode("utf-8")
            entries[name] = _parse_entry(name, value)
    except (ValueError, struct.error, UnicodeDecodeError) as e:
        raise ModelError(
            f"{index} is not a TensorFlow tensor-bundle index ({e})",
            "pass a TF1/TF2 checkpoint written by tf.train.Saver or tf.train.Checkpoint",
        ) from e
    if b"" not in (k for k, _ in raw):
        raise ModelError(f"{index} has no bundle header entry", "the file is not a TensorFlow checkpoint")
    return header, entries


def is_optimizer_slot(name: str) -> bool:
    """True for optimiser state (Adam moments, beta powers, momentum...) and bookkeeping entries."""
    base = name.rsplit("/", 1)[-1]
    return (
        any(m in name for m in _SLOT_MARKERS)
        or base in _SLOT_NAMES
        or name in _BOOKKEEPING
        or name.startswith("optimizer/")
    )


def list_tf_checkpoint(prefix: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Every entry of a checkpoint: ``name -> (shape, is_optimizer_slot)``, sorted by name."""
    _, entries = read_bundle_index(prefix)
    return {name: (e.shape, is_optimizer_slot(name)) for name, e in entries.items()}


def read_tf_checkpoint(
    prefix: str | os.PathLike, *, include_slots: bool = False, verify_checksums: bool = True
) -> dict[str, np.ndarray]:
    """Read a TensorFlow tensor-bundle checkpoint: ``name -> array`` (native byte order, own memory).

    ``prefix`` is what ``tf.train.Saver.save`` returned (e.g. ``models/iphone_orig``); its ``.index``
    file or a folder holding exactly one bundle also work. Optimiser slots and bookkeeping entries are
    left out unless ``include_slots`` (``list_tf_checkpoint`` names them). Sizes are always checked;
    ``verify_checksums`` also checks each tensor's CRC32C (pure Python, about 6 MB/s).
    Raises ModelError for missing files, non-bundles, partitioned variables and unsupported dtypes.
    """
    header, entries = read_bundle_index(prefix)
    _, base = _index_path(prefix)
    num_shards = header["num_shards"]
    byte_order: Literal[">", "<"] = ">" if header["endianness"] == 1 else "<"
    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for name, e in entries.items():
        if not include_slots and is_optimizer_slot(name):
            continue
        if e.dtype == _DT_STRING and name in _BOOKKEEPING:
            continue
        if e.sliced:
            raise ModelError(
                f"{base}: variable {name!r} is partitioned into slices",
                "re-save the checkpoint without variable partitioning",
            )
        if e.dtype not in _DTYPES:
            raise ModelError(
                f"{base}: variable {name!r} has TensorFlow dtype {e.dtype}, which is not supported",
                "only numeric tensors (float16/32/64, int8-64, uint8-64, bool) can be read",
            )
        if e.shard_id not in shards:
            path = Path(f"{base}.data-{e.shard_id:05d}-of-{num_shards:05d}")
            if not path.is_file():
                raise ModelError(
                    f"checkpoint data file {path} is missing",
                    "copy the .data-* files together with the .index file",
                )
            shards[e.shard_id] = path.read_bytes()
        dtype = _DTYPES[e.dtype].newbyteorder(byte_order)
        expected = int(np.prod(e.shape, dtype=np.int64)) * dtype.itemsize
        raw = shards[e.shard_id][e.offset : e.offset + e.size]
        if e.size != expected or len(raw) != expected:
            raise ModelError(
                f"{base}: variable {name!r} of shape {e.shape} needs {expected} bytes, "
                f"the bundle stores {e.size} (and the data file has {len(raw)} at offset {e.offset})",
                "the checkpoint is truncated or damaged; download it again",
            )
        if verify_checksums and e.crc32c is not None and mask_crc(crc32c(raw)) != e.crc32c:
            raise ModelError(
                f"{base}: checksum mismatch for variable {name!r}",
                "the checkpoint data file is damaged; download it again",
            )
        out[name] = np.frombuffer(raw, dtype=dtype).reshape(e.shape).astype(dtype.newbyteorder("="))
    return out
