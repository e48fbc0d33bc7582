"""User folders: a 4-D NIfTI is refused with a reason, a dangling link is reported."""

from __future__ import annotations

import numpy as np
import pytest

from safegen_guard.data.folder import find_items, load_folder
from safegen_guard.errors import DataLoadError


def test_4d_nifti_is_refused_not_cut_to_its_first_volume(tmp_path):
    """Main: the first of the 2 volumes was used silently."""
    nib = pytest.importorskip("nibabel")
    data = np.random.default_rng(0).random((24, 24, 12, 2), dtype=np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "fmri.nii.gz")
    with pytest.warns(UserWarning, match=r"fmri.nii.gz'.*a 4-D volume \(2 volumes of"):
        with pytest.raises(DataLoadError, match="1 unreadable"):
            load_folder(tmp_path, "train", 32)


def test_dangling_symlink_is_reported(tmp_path):
    """Main: a link to a deleted scan disappeared without a word."""
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "gone.nii.gz").symlink_to(tmp_path / "deleted.nii.gz")
    with pytest.warns(UserWarning, match=r"skipping dangling symbolic link .*gone.nii.gz"):
        items = find_items([tmp_path])
    assert [p.name for _, p in items] == ["a.png"]
