"""Tests of the `safegen` command line (safegen_guard.cli.main)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from safegen_guard import Guard
from safegen_guard.checkpoint import FORMAT_VERSION
from safegen_guard.cli import main


@pytest.fixture(scope="module")
def guard_dir(tiny_guard, tmp_path_factory):
    return tiny_guard.save(tmp_path_factory.mktemp("cli_guard") / "g")


@pytest.fixture
def inputs(tiny_real, tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    imgs = tiny_real["test"][:5, 0].numpy()
    for i in range(3):
        arr = np.round(imgs[i] * 255).astype(np.uint8)
        Image.fromarray(arr, mode="L").save(folder / ("sub" if i == 2 else ".") / f"img{i}.png")
    Image.fromarray(np.zeros((16, 16), np.uint8), mode="L").save(folder / "small.png")
    np.save(folder / "batch.npy", imgs[3:5, None].astype(np.float32))  # [2, 1, 32, 32]
    (folder / "notes.txt").write_text("ignored")
    return folder


def _run_score(inputs, guard_dir, out, overlays):
    with pytest.warns(UserWarning, match=r"skipped .*small.png: .*must be 32x32 pixels, got 16x16"):
        rc = main(
            [
                "score",
                str(inputs),
                "--guard",
                str(guard_dir),
                "--out",
                str(out),
                "--overlays",
                overlays,
                "--batch-size",
                "2",
            ]
        )
    assert rc == 0
    lines = (out / "verdicts.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    summary = json.loads((out / "summary.json").read_text())
    return records, summary


def test_score_folder(inputs, guard_dir, tmp_path, capsys):
    out = tmp_path / "out"
    records, summary = _run_score(inputs, guard_dir, out, "none")
    fingerprint = Guard.load(guard_dir).fingerprint
    assert len(records) == 5  # 3 PNGs + 2 images in the .npy; the small PNG is skipped
    paths = sorted({r["path"].rsplit("/", 1)[-1] for r in records})
    assert paths == ["batch.npy", "img0.png", "img1.png", "img2.png"]
    for r in records:
        assert {"path", "unsafe", "p_value", "guard_fingerprint"} <= set(r)
        assert isinstance(r["unsafe"], bool) and 0 < r["p_value"] <= 1
        assert r["guard_fingerprint"] == fingerprint
    assert summary["images"] == 5 and summary["skipped_files"] == 1
    assert summary["unsafe"] == sum(r["unsafe"] for r in records)
    assert summary["unsafe_rate"] == pytest.approx(summary["unsafe"] / 5)
    assert summary["guard"] == fingerprint
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary
    assert not (out / "overlays").exists()


def test_score_writes_overlays(inputs, guard_dir, tmp_path):
    pytest.importorskip("safegen_guard.viz")
    out = tmp_path / "out"
    out.mkdir()
    (out / "verdicts.jsonl").write_text('{"path": "earlier"}\n')
    records, _ = _run_score(inputs, guard_dir, out, "all")
    assert len(records) == 6 and records[0] == {"path": "earlier"}  # appended, not rewritten
    names = sorted(p.name for p in (out / "overlays").iterdir())
    assert names == ["batch_0.png", "batch_1.png", "img0.png", "img1.png", "img2.png"]
    with Image.open(out / "overlays" / "img0.png") as im:
        assert im.size[0] >= 32 and im.size[1] >= 32


def test_score_without_readable_inputs_returns_2(guard_dir, tmp_path):
    out = tmp_path / "o"
    with pytest.warns(UserWarning, match=r"skipped .*nothing\*\.png"):
        rc = main(
            ["score", str(tmp_path / "nothing*.png"), "--guard", str(guard_dir), "--out", str(out)]
        )
    assert rc == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 0 and summary["skipped_files"] == 1


def test_score_empty_folder_returns_2(guard_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(
        ["score", str(tmp_path / "empty"), "--guard", str(guard_dir), "--out", str(tmp_path / "o")]
    )
    assert rc == 2
    assert "no input files matched" in capsys.readouterr().err


def test_datasets(capsys):
    assert main(["datasets"]) == 0
    assert capsys.readouterr().out.split() == ["mni152", "ct_phantom"]


def test_info(guard_dir, capsys):
    assert main(["info", str(guard_dir)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["image_size"] == 32
    assert "weights_sha256" not in info and info["format_version"] == FORMAT_VERSION


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: safegen") and "score" in out and "fit" in out


def test_bad_arguments_exit_with_usage_error():
    with pytest.raises(SystemExit) as info:
        main(["score", "x"])  # --guard and --out are required
    assert info.value.code == 2


@pytest.mark.slow
def test_fit_command(tmp_path, capsys):
    out = tmp_path / "fitted"
    rc = main(
        [
            "fit",
            "--data",
            "mni152",
            "--profile",
            "tiny",
            "--size",
            "32",
            "--steps",
            "5",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    guard = Guard.load(out)
    assert guard.config.image_size == 32 and guard.config.max_steps == 5
    assert f"saved guard {guard.fingerprint}" in capsys.readouterr().out
