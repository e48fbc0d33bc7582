"""Tests of guard persistence: safetensors + JSON, hash and version checks, no pickle."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from safegen_guard import Guard
from safegen_guard.checkpoint import FORMAT_VERSION, meta_digest, read_checkpoint, write_checkpoint
from safegen_guard.errors import CheckpointError

MAJOR = int(FORMAT_VERSION.split(".")[0])


def _reseal(folder, meta):
    """Write ``meta`` as SAFEGEN would, with a matching meta_sha256 (a deliberate editor)."""
    from safegen_guard.io import json_bytes

    meta["meta_sha256"] = meta_digest(meta)
    (folder / "guard.json").write_bytes(json_bytes(meta))


def _weights(folder):
    (path,) = folder.glob("guard-*.safetensors")
    return path


@pytest.fixture(scope="module")
def saved(tiny_guard, tmp_path_factory):
    return tiny_guard.save(tmp_path_factory.mktemp("guard") / "g")


@pytest.fixture
def copy(saved, tmp_path):
    dst = tmp_path / "g"
    dst.mkdir()
    for p in saved.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_round_trip_identical_verdicts_and_fingerprint(tiny_guard, tiny_real, saved):
    loaded = Guard.load(saved)
    assert loaded.fingerprint == tiny_guard.fingerprint
    assert not loaded.training
    assert loaded.config == tiny_guard.config
    x = tiny_real["test"][:6]
    a, b = tiny_guard.evaluate(x), loaded.evaluate(x)
    assert torch.equal(a.p_value, b.p_value)
    assert torch.equal(a.unsafe, b.unsafe)
    assert torch.equal(a.anomaly_map, b.anomaly_map)
    assert a.reasons == b.reasons and b.guard_fingerprint == a.guard_fingerprint


def test_folder_contains_only_json_and_safetensors(saved, tiny_guard):
    meta = json.loads((saved / "guard.json").read_text())
    assert meta["weights_file"] == f"guard-{meta['weights_sha256'][:16]}.safetensors"
    assert sorted(p.name for p in saved.iterdir()) == sorted(["guard.json", meta["weights_file"]])
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["guard_fingerprint"] == tiny_guard.fingerprint
    assert meta["views"] == tiny_guard.detector.view_names
    tensors = load_file(str(saved / meta["weights_file"]))  # plain safetensors, no pickle
    assert set(tensors) == set(tiny_guard.state_dict())


def test_tampered_weights(copy):
    w = _weights(copy)
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0x01
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"was modified after saving"):
        Guard.load(copy)


def test_other_major_format_version(copy):
    meta = json.loads((copy / "guard.json").read_text())
    other = f"{MAJOR + 1}.0"
    meta["format_version"] = other
    (copy / "guard.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=rf"format version {other} is not supported"):
        Guard.load(copy)


def test_minor_version_change_still_loads(copy, tiny_guard):
    meta = json.loads((copy / "guard.json").read_text())
    meta["format_version"] = f"{MAJOR}.7"
    _reseal(copy, meta)
    assert Guard.load(copy).fingerprint == tiny_guard.fingerprint


@pytest.mark.parametrize("name", ["guard.json", "guard-*.safetensors"])
def test_missing_file(copy, name):
    (path,) = copy.glob(name)
    path.unlink()
    with pytest.raises(
        CheckpointError, match=rf"not a SAFEGEN guard folder: .*{path.name} is missing"
    ):
        Guard.load(copy)


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match=r"is missing"):
        Guard.load(tmp_path / "nope")


def test_garbage_json(copy):
    (copy / "guard.json").write_bytes(b"{not json\xff")
    with pytest.raises(CheckpointError, match=r"is not valid JSON"):
        Guard.load(copy)


def test_recorded_fingerprint_mismatch(copy):
    meta = json.loads((copy / "guard.json").read_text())
    meta["guard_fingerprint"] = "0" * 16
    _reseal(copy, meta)
    with pytest.raises(CheckpointError, match=r"differs from the recorded 0{16}"):
        Guard.load(copy)


def test_incompatible_config(copy):
    meta = json.loads((copy / "guard.json").read_text())
    meta["config"]["colour"] = "blue"
    _reseal(copy, meta)
    with pytest.raises(CheckpointError, match=r"does not match this SAFEGEN version"):
        Guard.load(copy)


def test_write_read_checkpoint_low_level(tmp_path):
    tensors = {"a": torch.arange(6.0).view(2, 3), "b": torch.ones((), dtype=torch.bool)}
    digest = write_checkpoint(tmp_path, tensors, {"hello": "world"})
    back, meta = read_checkpoint(tmp_path)
    assert meta["hello"] == "world" and meta["weights_sha256"] == digest
    assert torch.equal(back["a"], tensors["a"]) and torch.equal(back["b"], tensors["b"])
    # a correct hash over bytes that are not safetensors
    _weights(tmp_path).write_bytes(b"garbage")
    import hashlib

    meta["weights_sha256"] = hashlib.sha256(b"garbage").hexdigest()
    _reseal(tmp_path, meta)
    with pytest.raises(CheckpointError, match=r"is not a valid safetensors file"):
        read_checkpoint(tmp_path)


def test_guard_saved_before_the_modality_field_loads_with_its_fingerprint(copy, tiny_guard):
    meta = json.loads((copy / "guard.json").read_text())
    assert meta["config"].pop("modality") is None  # as a guard saved before the field existed
    _reseal(copy, meta)
    loaded = Guard.load(copy)
    assert loaded.config.modality is None and loaded.fingerprint == tiny_guard.fingerprint
    assert loaded.detector.view_names == tiny_guard.detector.view_names
