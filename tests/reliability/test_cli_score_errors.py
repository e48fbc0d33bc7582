"""`safegen score` with bad inputs: clear reasons, nothing aborted, nothing overwritten."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from safegen_guard.cli import main


@pytest.fixture(scope="module")
def guard_dir(tiny_guard, tmp_path_factory):
    return tiny_guard.save(tmp_path_factory.mktemp("cli_rel") / "g")


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _png(path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8), mode="L").save(path)


def _score(guard_dir, out, *inputs: str, extra=()) -> int:
    return main(["score", *inputs, "--guard", str(guard_dir), "--out", str(out), *extra])


def test_pickle_pt_is_skipped_and_the_rest_scored(guard_dir, tmp_path, capsys):
    """Main: the pickle aborted the run after 2 of 6 files, without summary.json."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        torch.save(torch.rand(1, 32, 32), folder / f"t{i}.pt")
    marker = tmp_path / "pwned"
    (folder / "t2_evil.pt").write_bytes(pickle.dumps(_Evil(str(marker))))
    assert _score(guard_dir, tmp_path / "out", str(folder)) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == 5 and summary["skipped_files"] == 1
    (skip,) = summary["skipped"]
    assert skip["path"].endswith("t2_evil.pt") and "not a plain tensor file" in skip["error"]
    assert "weights_only=False" not in skip["error"]
    assert not marker.exists()


def test_out_naming_a_file_fails_before_any_work(guard_dir, tmp_path, capsys):
    """Main: crashed with a traceback after scoring the first file."""
    _png(tmp_path / "a.png", 0)
    (tmp_path / "out").write_text("a file")
    assert _score(guard_dir, tmp_path / "out", str(tmp_path / "a.png")) == 2
    assert "--out must be a folder, got the existing file" in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "a file"


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_batch_size_must_be_positive(guard_dir, tmp_path, capsys, value):
    """Main: -1 gave a raw torch RuntimeError, 0 was silently replaced by the default."""
    with pytest.raises(SystemExit) as info:
        _score(guard_dir, tmp_path / "o", "x.png", extra=["--batch-size", value])
    assert info.value.code == 2
    assert f"must be a positive int, got {value if value != 'x' else repr(value)}" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("value", [0, -1])
def test_evaluate_batch_size_must_be_positive(tiny_guard, value):
    with pytest.raises(ValueError, match=rf"`batch_size` must be a positive int, got {value}"):
        tiny_guard.evaluate(torch.rand(2, 1, 32, 32), batch_size=value)


def test_missing_folder_glob_and_dangling_link_are_reported(guard_dir, tmp_path, capsys):
    """Main: a missing folder read as "unsupported file type ''"; a glob as a file name."""
    _png(tmp_path / "ok.png", 0)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    _png(tmp_path / "in" / "b.png", 1)
    rc = _score(
        guard_dir,
        tmp_path / "out",
        str(tmp_path / "missing_dir"),
        str(tmp_path / "none*.png"),
        str(tmp_path / "ok.png"),
        str(tmp_path / "in"),
    )
    assert rc == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == 2
    errors = {s["path"].rsplit("/", 1)[-1]: s["error"] for s in summary["skipped"]}
    assert errors == {
        "missing_dir": "no such file or folder",
        "none*.png": "the glob pattern matched no files",
        "gone.png": f"dangling symbolic link (to {str(tmp_path / 'nowhere.png')!r})",
    }


def test_nothing_to_score_is_a_clear_error(guard_dir, tmp_path, capsys):
    rc = _score(guard_dir, tmp_path / "out", str(tmp_path / "missing_dir"))
    assert rc == 2
    err = capsys.readouterr().err
    assert "no input files matched" in err and "no such file or folder" in err


def test_two_runs_into_one_out_keep_both_runs_apart(guard_dir, tmp_path, capsys):
    """Main: same-stem overlays overwrote each other; run 2's summary hid run 1's lines."""
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        _png(tmp_path / sub / "img.png", ord(sub))
    args = (str(tmp_path / "a"), str(tmp_path / "b"))
    for _ in range(2):
        assert _score(guard_dir, tmp_path / "out", *args, extra=["--overlays", "all"]) == 0
    records = [
        json.loads(x) for x in (tmp_path / "out" / "verdicts.jsonl").read_text().split("\n")[:-1]
    ]
    assert len(records) == 4 and len({r["overlay"] for r in records}) == 4
    assert all((tmp_path / "out" / r["overlay"]).is_file() for r in records)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["run_id"] for r in records].count(summary["run_id"]) == summary["images"] == 2
