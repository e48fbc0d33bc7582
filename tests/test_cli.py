"""Tests of the `safegen` command line (safegen_guard.cli.main)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from safegen_guard import Guard
from safegen_guard.checkpoint import FORMAT_VERSION
from safegen_guard.cli import main
from safegen_guard.detector.registry import default_views


@pytest.fixture(scope="module")
def guard_dir(tiny_guard, tmp_path_factory):
    return tiny_guard.save(tmp_path_factory.mktemp("cli_guard") / "g")


@pytest.fixture(scope="module")
def explained_guard_dir(guard_dir, tiny_real, tmp_path_factory):
    from safegen_guard.explain import fit_explainer

    guard = Guard.load(guard_dir)
    expl = fit_explainer(
        guard, tiny_real["train"], tiny_real["val"], steps=20, progress=False, n_background=8
    )
    return guard.attach_explainer(expl).save(tmp_path_factory.mktemp("cli_expl") / "g")


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


def _run_score(inputs, guard_dir, out, overlays, capsys, *extra):
    args = ["score", str(inputs), "--guard", str(guard_dir), "--out", str(out)]
    rc = main([*args, "--overlays", overlays, "--batch-size", "2", *extra])
    assert rc == 0
    err = capsys.readouterr().err.strip().splitlines()
    skipped = [line for line in err if line.startswith("safegen: skipped")]
    if "--resize" not in extra:
        assert len(skipped) == 1  # one line for all skipped files, not one warning each
        assert "small.png: `images` must be 32x32 pixels, got 16x16" in skipped[0]
        assert "pass --resize" in skipped[0]
    lines = (out / "verdicts.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    summary = json.loads((out / "summary.json").read_text())
    return records, summary


def test_score_folder(inputs, guard_dir, tmp_path, capsys):
    out = tmp_path / "out"
    records, summary = _run_score(inputs, guard_dir, out, "none", capsys)
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
    assert summary["skipped"][0]["path"].endswith("small.png")
    assert not (out / "overlays").exists()


def test_score_writes_overlays(inputs, guard_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "verdicts.jsonl").write_text('{"path": "earlier"}\n')
    records, _ = _run_score(inputs, guard_dir, out, "all", capsys)
    assert len(records) == 6 and records[0] == {"path": "earlier"}  # appended, not rewritten
    (run,) = [p.name for p in (out / "overlays").iterdir()]  # one folder per run
    assert {r["run_id"] for r in records[1:]} == {run}
    names = sorted(p.name for p in (out / "overlays" / run).iterdir())
    assert names == ["batch_0.png", "batch_1.png", "img0.png", "img1.png", "img2.png"]
    assert {r["overlay"] for r in records[1:]} == {f"overlays/{run}/{n}" for n in names}
    with Image.open(out / "overlays" / run / "img0.png") as im:  # image | map | mask, legend
        assert im.size[0] >= 3 * 128 and im.size[1] >= 128
    assert all(r["maps"] == ["anomaly_map", "mask"] for r in records[1:])


def test_score_resize_scores_mismatched_images(inputs, guard_dir, tmp_path, capsys):
    records, summary = _run_score(inputs, guard_dir, tmp_path / "o", "none", capsys, "--resize")
    assert summary["skipped_files"] == 0 and len(records) == 6
    assert any(r["path"].endswith("small.png") for r in records)


def test_score_explain_and_report(inputs, explained_guard_dir, tmp_path, capsys):
    out = tmp_path / "out"
    noise = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(noise, mode="L").save(inputs / "noise.png")
    records, summary = _run_score(
        inputs, explained_guard_dir, out, "unsafe", capsys, "--explain", "--report"
    )
    assert (out / "report" / "index.html").is_file()
    html = (out / "report" / "index.html").read_text()
    assert "<table>" in html and "<pre>" not in html and "http" not in html
    assert len(records) == 6 and summary["unsafe"] >= 1  # the noise image at least
    assert next(r for r in records if r["path"].endswith("noise.png"))["unsafe"]
    assert all((out / r["overlay"]).is_file() for r in records)
    for r in records:
        expected = ["anomaly_map", "mask", "gradcam", "shap", "heatmap", "heatmap_mask"]
        expected = expected if r["unsafe"] else []
        assert set(expected) <= set(r["maps"])
        assert r["unsafe"] or r["maps"] == ["anomaly_map", "mask"]


def test_score_explain_needs_an_explainer(inputs, guard_dir, tmp_path, capsys):
    args = ["score", str(inputs), "--guard", str(guard_dir), "--out", str(tmp_path), "--explain"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no explainer" in err[0] and err[0].startswith("safegen: error")


def test_score_with_a_declared_preparation(inputs, guard_dir, tmp_path, capsys):
    # the fixture guard was calibrated on tensors: one group, label 0
    records, _ = _run_score(inputs, guard_dir, tmp_path / "o", "none", capsys, "--preparation", "0")
    assert {r["guard_fingerprint"] for r in records} == {Guard.load(guard_dir).fingerprint}
    args = ["score", str(inputs), "--guard", str(guard_dir), "--out", str(tmp_path / "p")]
    assert main([*args, "--preparation", "plain"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no calibration images in preparation group(s) [1]" in err[0]
    with pytest.raises(SystemExit):
        main([*args, "--preparation", "scanner"])
    assert "expected `plain`, `augmented` or an integer group label" in capsys.readouterr().err


def test_missing_guard_and_unknown_dataset_give_one_line(tmp_path, capsys):
    args = ["score", str(tmp_path), "--guard", str(tmp_path / "nope"), "--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "guard.json is missing" in err[0]
    assert main(["fit", "--data", "mni15", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "safegen: error: unknown dataset 'mni15': expected one of ['ct_phantom', 'mni152'] or a "
        "path to a folder/file of NIfTI, DICOM or PNG images"
    ]


def test_version(capsys):
    from safegen_guard import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"safegen {__version__}"


def test_help_texts_are_plain_and_complete():
    import argparse

    from safegen_guard.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    study = next(
        a for a in subs.choices["study"]._actions if isinstance(a, argparse._SubParsersAction)
    )
    commands = {"safegen": parser, **subs.choices, **study.choices}
    for name, sub in commands.items():
        text = sub.format_help()
        assert "``" not in text and "::" not in text, name
        assert sub.description, f"{name} --help has no description"
        for action in sub._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{name} {action.option_strings or action.dest} has no help"


def test_score_without_readable_inputs_returns_2(guard_dir, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(
        ["score", str(tmp_path / "nothing*.png"), "--guard", str(guard_dir), "--out", str(out)]
    )
    assert rc == 2
    assert "skipped 1 of 1 files (first: " in capsys.readouterr().err
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


def test_info(guard_dir, explained_guard_dir, capsys):
    assert main(["info", str(guard_dir)]) == 0
    text = capsys.readouterr().out
    assert "32x32" in text and "unsafe if p <= 0.05" in text
    assert "none: --explain is unavailable" in text and "real reference images" in text
    assert "1 preparation group(s)" in text  # tensors given to Guard.fit: one group
    assert "memorization none: copies of training images are not checked" in text
    assert "(modality not given: union of the MRI and CT defaults)" in text
    assert main(["info", str(explained_guard_dir)]) == 0
    assert "explainer    fitted" in capsys.readouterr().out
    assert main(["info", str(guard_dir), "--json"]) == 0
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
            "--explainer-steps",
            "5",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    guard = Guard.load(out)
    assert guard.config.image_size == 32 and guard.config.max_steps == 5
    assert guard.config.modality == "mri"  # the named data set's modality chose the views
    assert guard.detector.view_names == list(default_views("mri"))
    assert guard.explainer is not None  # fitted by default
    assert guard.memorization is not None and len(guard.memorization) == 51  # mni152 train
    assert guard.memorization.labels[0].startswith("mni152/train/slice")
    assert f"saved guard {guard.fingerprint}" in capsys.readouterr().out


def test_score_reports_copies_with_their_training_file(guard_dir, tiny_real, tmp_path, capsys):
    from safegen_guard.memorization import MemorizationConfig

    train = tiny_real["train"][::2]  # one draw per slice
    guard = Guard.load(guard_dir).fit_memorization(
        train, tiny_real["val"], MemorizationConfig.profile("tiny", alpha=0.05)
    )
    guard.memorization.labels = [f"scan{i:02d}.nii.gz" for i in range(len(train))]
    guard.save(tmp_path / "g")
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "copy.npy", train[7:8].numpy())
    np.save(folder / "new.npy", tiny_real["test"][:1].numpy())
    out = tmp_path / "o"
    assert main(["score", str(folder), "--guard", str(tmp_path / "g"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    records = {
        json.loads(line)["path"].rsplit("/", 1)[-1]: json.loads(line)
        for line in (out / "verdicts.jsonl").read_text().splitlines()
    }
    assert records["copy.npy"]["memorized"] and records["copy.npy"]["unsafe"]
    assert records["copy.npy"]["nearest_training_file"] == "scan07.nii.gz"
    assert not records["new.npy"]["memorized"]
    summary = json.loads((out / "summary.json").read_text())
    assert [c["nearest_training_file"] for c in summary["memorized"]] == ["scan07.nii.gz"]
    assert "copy.npy[0] ~ scan07.nii.gz" in err
