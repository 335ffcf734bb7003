"""Paired datasets: DPED's layout (lazily, at full-dataset scale), pair folders, CSV lists, errors."""

from __future__ import annotations

import io
from pathlib import Path

import PIL.Image
import pytest
import torch

import dslrify.data.paired as paired_module
from dslrify.data import DPEDDataset, PairFolderDataset, full_size_test_images, open_pairs
from dslrify.errors import DataError
from dslrify.photo import read_rgb


def _jpeg_bytes(value: int, size: tuple[int, int] = (4, 4)) -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", size, (value, value, value)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def make_dped(root: Path, phone: str = "iphone", train: int = 3, test: int = 2) -> Path:
    """A DPED-layout tree of tiny grey JPEGs (phone 100, canon 200) under ``root``; returns ROOT."""
    phone_jpg, canon_jpg = _jpeg_bytes(100), _jpeg_bytes(200)
    for split, count in (("training_data", train), ("test_data/patches", test)):
        for folder, data in ((phone, phone_jpg), ("canon", canon_jpg)):
            d = root / phone / split / folder
            d.mkdir(parents=True)
            for i in range(count):
                (d / f"{i}.jpg").write_bytes(data)  # same bytes everywhere: fast to make thousands
    return root


def make_pair_folder(root: Path, names: dict[str, tuple[str, str]]) -> Path:
    """ROOT/input/STEM+ext_in and ROOT/target/STEM+ext_out, 8x6 images."""
    for stem, (ext_in, ext_out) in names.items():
        for folder, ext, v in (("input", ext_in, 50), ("target", ext_out, 150)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            PIL.Image.new("RGB", (8, 6), (v, v, v)).save(root / folder / f"{stem}{ext}")
    return root


def test_dped_construction_on_thousands_of_pairs_opens_no_image(tmp_path, monkeypatch):
    root = make_dped(tmp_path, train=2500, test=10)
    calls = {"read_rgb": 0, "open": 0}
    real_read, real_open = paired_module.read_rgb, PIL.Image.open

    def counting_read(path):
        calls["read_rgb"] += 1
        return real_read(path)

    def counting_open(*args, **kwargs):
        calls["open"] += 1
        return real_open(*args, **kwargs)

    monkeypatch.setattr(paired_module, "read_rgb", counting_read)
    monkeypatch.setattr(PIL.Image, "open", counting_open)
    ds = DPEDDataset(root, phone="iphone", split="train")
    assert len(ds) == 2500
    assert calls == {"read_rgb": 0, "open": 0}
    phone, canon = ds[1234]
    assert calls == {"read_rgb": 2, "open": 2}  # decoding happens in __getitem__, one pair at a time
    assert phone.shape == canon.shape == (3, 4, 4) and phone.dtype == torch.float32
    assert abs(phone.mean().item() - 100 / 255) < 0.02 and abs(canon.mean().item() - 200 / 255) < 0.02


def test_dped_pairs_are_sorted_numerically_and_named(tmp_path):
    ds = DPEDDataset(make_dped(tmp_path, train=12), split="train")
    assert [ds.name(i) for i in range(len(ds))] == [str(i) for i in range(12)]
    phone_path, canon_path = ds.paths(10)
    assert phone_path == tmp_path / "iphone" / "training_data" / "iphone" / "10.jpg"
    assert canon_path == tmp_path / "iphone" / "training_data" / "canon" / "10.jpg"


def test_dped_accepts_root_or_root_phone_and_any_phone_folder_name(tmp_path):
    root = make_dped(tmp_path, phone="pixel", train=3, test=2)
    for given in (root, root / "pixel"):
        ds = DPEDDataset(given, phone=None, split="test")
        assert (len(ds), ds.phone) == (2, "pixel")
    # The default phone="iphone" still works when given ROOT/PHONE of another phone.
    assert len(DPEDDataset(root / "pixel", split="train")) == 3


def test_dped_with_several_phones_asks_which_one(tmp_path):
    make_dped(tmp_path, phone="iphone")
    make_dped(tmp_path, phone="sony", train=5)
    assert len(DPEDDataset(tmp_path, phone="sony")) == 5
    with pytest.raises(DataError, match="several phones: iphone, sony"):
        open_pairs(tmp_path)


def test_dped_missing_partners_are_reported_at_construction_with_at_most_five_names(tmp_path):
    root = make_dped(tmp_path, train=10)
    for i in range(7):
        (root / "iphone" / "training_data" / "canon" / f"{i}.jpg").unlink()
    with pytest.raises(
        DataError, match=r"7 file\(s\) .* no partner: 0.jpg, 1.jpg, 2.jpg, 3.jpg, 4.jpg, \.\.\. \(2 more\)"
    ):
        DPEDDataset(root)


def test_size_mismatch_is_reported_when_the_pair_is_read(tmp_path):
    root = make_dped(tmp_path, train=3)
    bad = root / "iphone" / "training_data" / "canon" / "2.jpg"
    bad.write_bytes(_jpeg_bytes(200, size=(5, 4)))
    ds = DPEDDataset(root)  # construction does not look inside files
    ds[1]
    with pytest.raises(DataError, match=r"2\.jpg is 4x4 but its target .*canon/2\.jpg is 5x4"):
        ds[2]


def test_corrupt_file_gives_data_error_naming_it(tmp_path):
    root = make_dped(tmp_path, train=3)
    bad = root / "iphone" / "training_data" / "iphone" / "1.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=str(bad)):
        DPEDDataset(root)[1]


def test_unknown_split_and_non_dped_folder_are_data_errors(tmp_path):
    root = make_dped(tmp_path)
    with pytest.raises(DataError, match="unknown DPED split"):
        DPEDDataset(root, split="val")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="looked for .*training_data"):
        DPEDDataset(tmp_path / "empty")


def test_pair_folder_matches_by_stem_across_extensions(tmp_path):
    root = make_pair_folder(
        tmp_path, {"b10": (".jpg", ".png"), "b2": (".png", ".png"), "a": (".JPG", ".tif")}
    )
    (root / "input" / "notes.txt").write_text("ignored")
    ds = PairFolderDataset(root)
    assert [ds.name(i) for i in range(len(ds))] == ["a", "b2", "b10"]
    assert ds.paths(2) == (root / "input" / "b10.jpg", root / "target" / "b10.png")
    inp, tgt = ds[0]
    assert inp.shape == tgt.shape == (3, 6, 8)


def test_pair_folder_reports_unpaired_and_ambiguous_files(tmp_path):
    root = make_pair_folder(tmp_path / "one", {"a": (".png", ".png"), "b": (".png", ".png")})
    (root / "target" / "b.png").unlink()
    with pytest.raises(DataError, match=r"1 file\(s\) .* no partner: b.png"):
        PairFolderDataset(root)
    root = make_pair_folder(tmp_path / "two", {"a": (".png", ".png")})
    PIL.Image.new("RGB", (8, 6)).save(root / "input" / "a.jpg")
    with pytest.raises(DataError, match="both a.jpg and a.png"):
        PairFolderDataset(root)


def test_csv_pairs_resolve_relative_paths_against_the_csv_folder(tmp_path, monkeypatch):
    make_pair_folder(tmp_path / "imgs", {"x": (".png", ".png"), "y": (".png", ".png")})
    absolute = tmp_path / "imgs" / "target" / "y.png"
    csv_path = tmp_path / "lists" / "pairs.csv"
    csv_path.parent.mkdir()
    csv_path.write_text(
        f"input,target\n../imgs/input/x.png,../imgs/target/x.png\n../imgs/input/y.png,{absolute}\n"
    )
    monkeypatch.chdir(tmp_path / "imgs")  # the working directory must not matter
    ds = open_pairs(csv_path)
    assert isinstance(ds, PairFolderDataset) and len(ds) == 2
    assert ds.paths(1)[1] == absolute
    assert ds.name(0) == "../imgs/input/x"
    inp, tgt = ds[0]
    assert abs(inp.mean().item() - 50 / 255) < 1e-6 and abs(tgt.mean().item() - 150 / 255) < 1e-6


def test_csv_with_missing_files_or_wrong_header_is_a_data_error(tmp_path):
    bad_header = tmp_path / "a.csv"
    bad_header.write_text("phone,dslr\nx.png,y.png\n")
    with pytest.raises(DataError, match="expected columns input,target"):
        PairFolderDataset.from_csv(bad_header)
    missing = tmp_path / "b.csv"
    missing.write_text("input,target\n" + "".join(f"in{i}.png,out{i}.png\n" for i in range(4)))
    with pytest.raises(DataError, match=r"8 missing file\(s\): .*in0.png, .*out0.png, .*, \.\.\. \(3 more\)"):
        PairFolderDataset.from_csv(missing)


def test_open_pairs_detects_each_layout_and_lists_what_it_looked_for(tmp_path):
    assert isinstance(open_pairs(make_dped(tmp_path / "dped"), split="test"), DPEDDataset)
    assert isinstance(
        open_pairs(make_pair_folder(tmp_path / "pf", {"a": (".png", ".png")})), PairFolderDataset
    )
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match=r"input/ \+ .*target/ .*PHONE/training_data.*\.csv") as err:
        open_pairs(tmp_path / "nothing")
    assert err.value.advice
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a .csv"):
        open_pairs(tmp_path / "notes.txt")


def test_real_dped_slice_has_198_train_and_39_test_pairs_of_100x100(shared_data):
    dped = shared_data / "dped"
    train, test = DPEDDataset(dped, split="train"), open_pairs(dped / "iphone", split="test")
    assert (len(train), len(test)) == (198, 39)
    phone, canon = test[38]
    assert phone.shape == canon.shape == (3, 100, 100)
    assert phone.min() >= 0.0 and canon.max() <= 1.0 and not torch.equal(phone, canon)
    full = full_size_test_images(dped)
    assert [p.name for p in full] == ["0.png", "1.png", "2.png", "3.png"]
    assert read_rgb(full[0]).shape == (720, 1280, 3)


def test_missing_shared_data_skips_here_and_fails_under_ci(tmp_path):
    from conftest import data_or_skip

    assert data_or_skip(tmp_path, ci=True) == tmp_path
    with pytest.raises(pytest.skip.Exception, match="absent"):
        data_or_skip(tmp_path / "data", ci=False)
    with pytest.raises(pytest.fail.Exception, match="CI has the data"):
        data_or_skip(tmp_path / "data", ci=True)


def test_every_test_that_reads_the_shared_data_is_marked(request):
    """The marker follows the fixture, also through other fixtures (``-m requires_data`` selects them)."""
    items = request.session.items
    users = [item for item in items if "shared_data" in getattr(item, "fixturenames", ())]
    assert all(item.get_closest_marker("requires_data") for item in users)
    assert not any(item.get_closest_marker("requires_data") for item in items if item not in users), (
        "requires_data without the shared_data fixture"
    )
