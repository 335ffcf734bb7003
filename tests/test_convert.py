"""The TensorFlow tensor-bundle reader and the DPED/PPCN importers.

The reader is checked on small bundles written here byte by byte (SSTable blocks with restart points
and shared key prefixes, BundleEntryProto values, a data shard), and, when ``../shared/data`` exists,
on DPED's and PPCN's released checkpoints.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from dslrify.checkpoint import load_checkpoint
from dslrify.convert import import_dped, import_ppcn, list_tf_checkpoint, read_tf_checkpoint
from dslrify.convert.tf_checkpoint import crc32c, mask_crc
from dslrify.errors import ModelError

_DT = {np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("int64"): 9}


# --- a minimal tensor-bundle writer (the format as tensor_bundle.cc and LevelDB's table write it) ---


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _fv(num: int, value: int) -> bytes:  # varint field
    return _varint(num << 3) + _varint(value)


def _fb(num: int, value: bytes) -> bytes:  # length-delimited field
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int = 2) -> bytes:
    out, restarts, prev = b"", [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        prev = key
    restarts = restarts or [0]
    return out + b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))


def write_bundle(
    prefix: Path,
    tensors: dict[str, np.ndarray],
    *,
    block_entries: int = 3,
    big_endian: bool = False,
    compression: int = 0,
    raw_entries: dict[str, bytes] | None = None,
) -> None:
    """Write ``prefix.index`` + ``prefix.data-00000-of-00001`` holding ``tensors``."""
    order = ">" if big_endian else "<"
    data, entries = b"", dict(raw_entries or {})
    for name, arr in tensors.items():
        raw = arr.astype(arr.dtype.newbyteorder(order)).tobytes()
        shape = b"".join(_fb(2, _fv(1, d)) for d in arr.shape)
        entries[name] = (
            _fv(1, _DT[arr.dtype])
            + _fb(2, shape)
            + _fv(4, len(data))
            + _fv(5, len(raw))
            + _varint(6 << 3 | 5)
            + struct.pack("<I", mask_crc(crc32c(raw)))
        )
        data += raw
    header = _fv(1, 1) + _fv(2, int(big_endian)) + _fb(3, _fv(1, 1))
    kvs = [(b"", header)] + sorted((k.encode(), v) for k, v in entries.items())
    out, index = b"", []

    def put(block: bytes) -> bytes:
        nonlocal out
        handle = _varint(len(out)) + _varint(len(block))
        kind = bytes([compression])
        out += block + kind + struct.pack("<I", mask_crc(crc32c(block + kind)))
        return handle

    for i in range(0, len(kvs), block_entries):
        chunk = kvs[i : i + block_entries]
        index.append((chunk[-1][0], put(_block(chunk))))
    meta = put(_block([]))
    footer = (meta + put(_block(index, 1))).ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    Path(f"{prefix}.index").write_bytes(out + footer)
    Path(f"{prefix}.data-00000-of-00001").write_bytes(data)


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "net/conv/W": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
        "net/conv/b": rng.standard_normal(4).astype(np.float32),
        "net/conv/b/Adam": np.zeros(4, np.float32),
        "net/conv/b/Adam_1": np.zeros(4, np.float32),
        "net/dense/kernel": rng.standard_normal((5, 2)),
        "net/count": np.array([1, -2, 3], np.int32),
        "net/step": np.array(2**40, np.int64),
        "beta1_power": np.array(0.9, np.float32),
    }


# --- the reader on hand-written bundles ---


def test_crc32c_known_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


@pytest.mark.parametrize("block_entries", [1, 3, 100])
def test_roundtrip_dtypes_and_blocks(tmp_path: Path, block_entries: int) -> None:
    tensors = _tensors()
    write_bundle(tmp_path / "ckpt", tensors, block_entries=block_entries)
    got = read_tf_checkpoint(tmp_path / "ckpt")
    slots = {"net/conv/b/Adam", "net/conv/b/Adam_1", "beta1_power"}
    assert set(got) == set(tensors) - slots
    for name, arr in got.items():
        assert arr.dtype == tensors[name].dtype and arr.shape == tensors[name].shape
        np.testing.assert_array_equal(arr, tensors[name])
    assert set(read_tf_checkpoint(tmp_path / "ckpt", include_slots=True)) == set(tensors)
    listed = list_tf_checkpoint(tmp_path / "ckpt")
    assert {n for n, (_, slot) in listed.items() if slot} == slots
    assert listed["net/conv/W"][0] == (3, 3, 2, 4)


def test_prefix_forms_and_big_endian(tmp_path: Path) -> None:
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.arange(3, dtype=np.int64)}
    write_bundle(tmp_path / "m", tensors, big_endian=True)
    for form in (tmp_path / "m", tmp_path / "m.index", tmp_path):
        got = read_tf_checkpoint(form)
        np.testing.assert_array_equal(got["a"], tensors["a"])
        np.testing.assert_array_equal(got["b"], tensors["b"])
        assert got["a"].dtype.isnative


def test_missing_and_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        read_tf_checkpoint(tmp_path / "nothing")
    (tmp_path / "junk.index").write_bytes(b"this is not an sstable" * 5)
    with pytest.raises(ModelError, match="not a TensorFlow tensor-bundle"):
        read_tf_checkpoint(tmp_path / "junk")


def test_damaged_data_is_detected(tmp_path: Path) -> None:
    write_bundle(tmp_path / "c", {"w": np.ones(8, np.float32)})
    data = tmp_path / "c.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[5] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="checksum"):
        read_tf_checkpoint(tmp_path / "c")
    assert read_tf_checkpoint(tmp_path / "c", verify_checksums=False)["w"].shape == (8,)
    data.write_bytes(bytes(raw[:16]))
    with pytest.raises(ModelError, match="needs 32 bytes"):
        read_tf_checkpoint(tmp_path / "c")
    data.unlink()
    with pytest.raises(ModelError, match="missing"):
        read_tf_checkpoint(tmp_path / "c")


def test_compressed_index_block_is_refused(tmp_path: Path) -> None:
    write_bundle(tmp_path / "s", {"w": np.ones(2, np.float32)}, compression=1)
    with pytest.raises(ModelError, match="snappy"):
        read_tf_checkpoint(tmp_path / "s")


def test_unsupported_entries_are_refused(tmp_path: Path) -> None:
    string_entry = _fv(1, 7) + _fb(2, b"") + _fv(5, 4)
    write_bundle(tmp_path / "s", {}, raw_entries={"names": string_entry})
    with pytest.raises(ModelError, match="dtype 7"):
        read_tf_checkpoint(tmp_path / "s")
    sliced = _fv(1, 1) + _fb(2, _fb(2, _fv(1, 4))) + _fb(7, b"")
    write_bundle(tmp_path / "p", {}, raw_entries={"part": sliced})
    with pytest.raises(ModelError, match="partitioned"):
        read_tf_checkpoint(tmp_path / "p")


# --- the real checkpoints ---


@pytest.fixture(scope="module")
def dped_ckpt(shared_data: Path) -> Path:
    return shared_data / "dped-checkpoints"


@pytest.fixture(scope="module")
def ppcn_ckpt(shared_data: Path) -> Path:
    return shared_data / "ppcn-checkpoints"


@pytest.mark.parametrize("phone", ["iphone", "sony", "blackberry"])
def test_real_dped_checkpoints(phone: str, dped_ckpt: Path) -> None:
    got = read_tf_checkpoint(dped_ckpt / f"{phone}_orig")
    assert len(got) == 12 * 2 + 16
    assert sum(a.size for a in got.values()) == 401_475
    assert got["generator/W1"].shape == (9, 9, 3, 64)
    assert got["generator/W12"].shape == (9, 9, 64, 3)
    assert got["generator/Variable_15"].shape == (64,)
    assert all(a.dtype == np.float32 for a in got.values())
    assert not any(slot for _, slot in list_tf_checkpoint(dped_ckpt / f"{phone}_orig").values())


@pytest.mark.parametrize(
    ("name", "scope", "count"), [("teacher", "generator_s", 21_843), ("student", "generator_little", 2_715)]
)
def test_real_ppcn_checkpoints(name: str, scope: str, count: int, ppcn_ckpt: Path) -> None:
    got = read_tf_checkpoint(ppcn_ckpt / f"{name}.ckpt")
    assert sum(a.size for a in got.values()) == count
    assert all(n.startswith(scope + "/") for n in got)
    assert got[f"{scope}/W0"].shape[:2] == (1, 7)


def test_import_dped_writes_a_described_checkpoint(tmp_path: Path, dped_ckpt: Path) -> None:
    out = import_dped(dped_ckpt / "sony_orig", tmp_path / "dped-sony")
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "dped"
    assert config["training"]["data"] == "DPED (Ignatov et al. 2017), sony subset"
    assert "sony_orig" in config["training"]["recipe"]
    assert "non-commercial" in config["training"]["licence"]
    model, _ = load_checkpoint(out)
    w = read_tf_checkpoint(dped_ckpt / "sony_orig")["generator/W5"]
    np.testing.assert_array_equal(model.blocks[1].conv2.weight.detach().numpy(), w.transpose(3, 2, 0, 1))
    scale = read_tf_checkpoint(dped_ckpt / "sony_orig")["generator/Variable_7"]
    np.testing.assert_array_equal(model.blocks[1].norm2.scale.detach().numpy(), scale)


def test_importers_refuse_the_wrong_network(tmp_path: Path, dped_ckpt: Path, ppcn_ckpt: Path) -> None:
    with pytest.raises(ModelError, match="outside the expected scope"):
        import_dped(ppcn_ckpt / "teacher.ckpt", tmp_path / "x")
    with pytest.raises(ModelError, match="missing"):
        import_ppcn(ppcn_ckpt / "student.ckpt", tmp_path / "y", variant="teacher")
    with pytest.raises(ModelError, match="neither PPCN's teacher"):
        import_ppcn(dped_ckpt / "iphone_orig", tmp_path / "z")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["teacher", "student"])
def test_import_ppcn_auto_detects_the_variant(tmp_path: Path, name: str, ppcn_ckpt: Path) -> None:
    out = import_ppcn(ppcn_ckpt / f"{name}.ckpt", tmp_path / name)
    model, config = load_checkpoint(out)
    assert config["architecture"] == f"ppcn-{name}"
    assert "Zheng222/PPCN" in config["training"]["source"]
    assert sum(p.numel() for p in model.parameters()) == {"teacher": 21_843, "student": 2_715}[name]
