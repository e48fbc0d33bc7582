import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file

from safegen_guard.data import load_dataset
from safegen_guard.errors import DataLoadError


def _head_volume(seed: int, shape=(40, 48, 30)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    head = (x / 0.8) ** 2 + (y / 0.9) ** 2 + (z / 0.9) ** 2 < 1
    vol = np.where(head, 800 + 200 * np.sin(6 * x) * np.cos(5 * y), 0.0)
    return (vol + rng.normal(0, 10, shape)).astype(np.float32)


def _write_nifti(path: Path, seed: int, zooms=(1.0, 1.0, 2.0)) -> Path:
    img = nib.Nifti1Image(_head_volume(seed), np.diag([*zooms, 1.0]))
    nib.save(img, str(path))
    return path


def _write_dicom_series(folder: Path, n: int = 6) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [-158.0, -179.0, -75.0 + 5.0 * i]
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(folder / f"slice{i:03d}.dcm")
    return folder


def _write_png(path: Path, seed: int) -> Path:
    vol = _head_volume(seed, (64, 56, 3))[..., 1]
    Image.fromarray((vol / vol.max() * 255).clip(0, 255).astype(np.uint8)).save(path)
    return path


def test_nifti_folder_split_by_file(tmp_path):
    for i in range(5):
        _write_nifti(tmp_path / f"sub{i}.nii.gz", i)
    splits = {s: load_dataset(tmp_path, s, 32) for s in ("train", "val", "test")}
    files = {s: {src["path"] for src in ds.info["sources"]} for s, ds in splits.items()}
    assert [len(files[s]) for s in ("train", "val", "test")] == [3, 1, 1]
    assert not files["train"] & files["val"] and not files["train"] & files["test"]
    for ds in splits.values():
        assert ds.info["split_by"] == "item"
        assert ds.images.shape[1:] == (1, 32, 32) and ds.images.max() <= 1
        assert ds.images.min() >= 0 and ds.masks.any() and not ds.masks.all()
        assert ds.positions.min() >= 0 and ds.positions.max() <= 1
        assert ds.info["acquisition"] is None  # real data: no simulated variation by default
    # same files, same result
    assert torch.equal(load_dataset(tmp_path, "val", 32).images, splits["val"].images)


def test_single_volume_split_by_slice_blocks(tmp_path):
    path = _write_nifti(tmp_path / "one.nii", 0)
    parts = {s: load_dataset(path, s, 32) for s in ("train", "val", "test")}
    idx = {s: set(ds.info["sources"][0]["slices"]) for s, ds in parts.items()}
    assert parts["train"].info["split_by"] == "slice_blocks"
    assert not idx["train"] & idx["val"] and not idx["train"] & idx["test"]
    assert len(idx["train"]) > len(idx["test"]) > 0


def test_anisotropic_in_plane_is_resampled(tmp_path):
    path = _write_nifti(tmp_path / "aniso.nii.gz", 1, zooms=(1.0, 2.0, 2.0))
    ds = load_dataset(path, "train", 32, acquisition=None)
    # physical aspect (0.9 * 48 * 2 mm deep) / (0.8 * 40 * 1 mm wide) = 2.7 after resampling;
    # without resampling to square pixels the mask would show the voxel aspect 1.35
    m = ds.masks[len(ds) // 2, 0]
    rows, cols = m.any(1).sum(), m.any(0).sum()
    assert 2.2 < float(rows) / float(cols) < 3.2


def test_mixed_folder_with_corrupt_files(tmp_path):
    _write_dicom_series(tmp_path / "ct_series")
    (tmp_path / "pngs").mkdir()
    _write_png(tmp_path / "pngs" / "a.png", 0)
    _write_png(tmp_path / "pngs" / "b.png", 1)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"this is not a nifti file" * 10)
    bad = tmp_path / "bad_series"
    bad.mkdir()
    shutil.copy(get_testdata_file("MR_truncated.dcm"), bad / "x.dcm")
    for split in ("train", "val", "test"):
        with pytest.warns(UserWarning, match="skipping unreadable file") as record:
            ds = load_dataset(tmp_path, split, 32)
        messages = " ".join(str(w.message) for w in record)
        assert str(broken) in messages and f"'{bad}': ValueError" in messages
        assert {s["path"] for s in ds.info["skipped"]} == {str(broken), str(bad)}
        assert ds.info["split_by"] == "item" and len(ds.info["sources"]) == 1
    # 3 readable items, one per split: the series and both PNGs are all used
    with pytest.warns(UserWarning, match="skipping unreadable file"):
        datasets = [load_dataset(tmp_path, s, 32) for s in ("train", "val", "test")]
    kinds = sorted(ds.info["sources"][0]["kind"] for ds in datasets)
    assert kinds == ["dicom", "image", "image"]


def test_dicom_series_and_png_load(tmp_path):
    series = _write_dicom_series(tmp_path / "series")
    ds = load_dataset(series, "train", 32)
    assert ds.info["sources"][0]["kind"] == "dicom"
    assert ds.images.shape[1:] == (1, 32, 32) and ds.images.std() > 0.05
    png = _write_png(tmp_path / "img.png", 0)
    img = load_dataset([png], "train", 32)
    assert len(img) == 1 and torch.isnan(img.positions).all()
    # orientation preserved: the PNG's top-left is dark background, centre is bright
    assert img.images[0, 0, 16, 16] > img.images[0, 0, 0, 0]


def test_all_corrupt_raises(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"nope")
    (tmp_path / "b.png").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="skipping unreadable file") as record:
        expected = r"no usable slices .*\(0 readable, 2 unreadable file\(s\) skipped\)"
        with pytest.raises(DataLoadError, match=expected):
            load_dataset(tmp_path, "train", 32)
    messages = " ".join(str(w.message) for w in record)
    assert "a.nii.gz'" in messages and "b.png'" in messages


def test_missing_and_empty_paths(tmp_path):
    with pytest.raises(DataLoadError, match="path does not exist: .*nowhere"):
        load_dataset(tmp_path / "nowhere", "train", 32)
    with pytest.raises(DataLoadError, match="no NIfTI .* files found under"):
        load_dataset(tmp_path, "train", 32)
    with pytest.raises(DataLoadError, match="expected at least one path, got an empty list"):
        load_dataset([], "train", 32)
