from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from generators import sample as sample_cli
from generators import train as train_cli
from generators.sample import save_grid

data = pytest.importorskip("safegen_guard.data")
if not hasattr(data, "load_dataset"):  # pragma: no cover - only while the loader is missing
    pytest.skip("safegen_guard.data.load_dataset is not available", allow_module_level=True)


@pytest.mark.parametrize("model", ["stylegan2", "ddpm"])
def test_train_then_sample_end_to_end_on_mni152(model: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc = train_cli.main(
        [
            model,
            "--data",
            "mni152",
            "--size",
            "32",
            "--preset",
            "tiny",
            "--max-steps",
            "2",
            "--out",
            str(out),
            "--logger",
            "csv",
            "--seed",
            "1",
            "--grid",
            "4",
            "--checkpoint-every",
            "1",
        ]
    )
    assert rc == 0
    last = out / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    steps_per_batch = 2 if model == "stylegan2" else 1
    assert ckpt["global_step"] == 2 * steps_per_batch
    assert ckpt["hyper_parameters"]["config"]["model"] == model
    grid = Image.open(out / "samples_final.png")
    assert grid.size == (2 * 34 + 2, 2 * 34 + 2)  # 2x2 tiles of 32 px with 2 px padding
    assert any((out / "logs").rglob("metrics.csv"))

    rc = sample_cli.main([str(last), "-n", "3", "--out", str(tmp_path / "s"), "--seed", "7"])
    assert rc == 0
    images = torch.load(tmp_path / "s" / "samples.pt", weights_only=True)
    assert images.shape == (3, 1, 32, 32)
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert len(list((tmp_path / "s" / "images").glob("*.png"))) == 3
    # Same seed, same samples.
    sample_cli.main([str(last), "-n", "3", "--out", str(tmp_path / "s2"), "--seed", "7"])
    torch.testing.assert_close(torch.load(tmp_path / "s2" / "samples.pt"), images)


def test_wandb_logger_is_offline_without_api_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    logger = train_cli.build_logger("wandb", tmp_path, "test")
    assert os.environ["WANDB_MODE"] == "offline"
    assert os.environ["WANDB_DIR"].startswith(str(tmp_path))
    assert logger.__class__.__name__ == "WandbLogger"


def test_unknown_logger_and_bad_cli_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`logger` must be one of"):
        train_cli.build_logger("mlflow", tmp_path, "x")
    with pytest.raises(SystemExit):
        train_cli.main(["vae", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="power of two"):
        train_cli.main(["ddpm", "--size", "48", "--out", str(tmp_path), "--logger", "none"])


def test_save_grid_layout_and_validation(tmp_path: Path) -> None:
    images = torch.zeros(3, 1, 4, 4)
    images[1] = 1.0
    path = save_grid(images, tmp_path / "g.png", nrow=3, padding=1)
    arr = torch.tensor(list(Image.open(path).getdata())).reshape(6, 16)
    assert arr[1:5, 6:10].eq(255).all() and arr[1:5, 1:5].eq(0).all()
    with pytest.raises(ValueError, match=r"intensities must lie in \[0, 1\]"):
        save_grid(images * 2, tmp_path / "bad.png")


def test_max_minutes_stops_training_before_max_steps(tmp_path: Path) -> None:
    out = tmp_path / "timed"
    args = ["ddpm", "--size", "32", "--preset", "tiny", "--max-steps", "1000"]
    args += ["--max-minutes", "0", "--out", str(out), "--logger", "none", "--grid", "1"]
    assert train_cli.main(args) == 0
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    # Lightning's Timer stops as soon as max_time has passed; the final checkpoint is written
    assert ckpt["global_step"] < 1000
    assert (out / "samples_final.png").exists()


def test_subset_trains_on_evenly_spaced_images_and_records_them(tmp_path: Path) -> None:
    assert train_cli.subset_indices(10, 4) == [0, 3, 6, 9]
    assert train_cli.subset_indices(5, 5) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="between 1 and the 5 training images, got 6"):
        train_cli.subset_indices(5, 6)
    out = tmp_path / "sub"
    args = ["ddpm", "--size", "32", "--preset", "tiny", "--max-steps", "1", "--subset", "3"]
    assert train_cli.main(args + ["--out", str(out), "--logger", "none", "--grid", "1"]) == 0
    record = json.loads((out / "subset.json").read_text())
    total = len(data.load_dataset("mni152", "train", 32))
    assert record["index"] == train_cli.subset_indices(total, 3)
    assert record["index"][0] == 0 and record["index"][-1] == total - 1
