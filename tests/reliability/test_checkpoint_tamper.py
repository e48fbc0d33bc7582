"""Tampered guard folders: any byte changed or key removed is a CheckpointError."""

from __future__ import annotations

import json
import random
import shutil

import pytest

from safegen_guard import Guard
from safegen_guard.checkpoint import meta_digest
from safegen_guard.errors import CheckpointError
from safegen_guard.io import json_bytes


@pytest.fixture(scope="module")
def saved(tiny_guard, tmp_path_factory):
    return tiny_guard.save(tmp_path_factory.mktemp("tamper") / "g")


@pytest.fixture
def folder(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "g")


def _meta(folder):
    return json.loads((folder / "guard.json").read_text())


def _write(folder, meta, reseal=False):
    if reseal:  # an editor who also recomputes meta_sha256
        meta["meta_sha256"] = meta_digest(meta)
    (folder / "guard.json").write_bytes(json_bytes(meta))


def _key_paths(obj, prefix=()):
    for k, v in obj.items():
        yield (*prefix, k)
        if isinstance(v, dict):
            yield from _key_paths(v, (*prefix, k))


def test_every_byte_of_guard_json_is_checked(folder):
    path = folder / "guard.json"
    original = path.read_bytes()
    accepted = []
    for i in range(len(original)):
        data = bytearray(original)
        data[i] ^= 0x01 if data[i] not in b"\n" else 0x20
        path.write_bytes(bytes(data))
        try:
            Guard.load(folder)
            accepted.append(i)
        except CheckpointError:
            pass
    assert accepted == []


def test_sampled_bytes_of_the_weights_are_checked(folder):
    (path,) = folder.glob("guard-*.safetensors")
    original = path.read_bytes()
    rng = random.Random(0)
    positions = list(range(16)) + rng.sample(range(len(original)), 48) + [len(original) - 1]
    for i in positions:
        data = bytearray(original)
        data[i] ^= 0x80
        path.write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="was modified after saving"):
            Guard.load(folder)
    path.write_bytes(original[:-1])
    with pytest.raises(CheckpointError):
        Guard.load(folder)


def test_every_key_removed_is_refused(folder):
    original = _meta(folder)
    keys = list(_key_paths(original))
    assert len(keys) > 20
    for path in keys:
        meta = json.loads(json.dumps(original))
        node = meta
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
        _write(folder, meta)
        with pytest.raises(CheckpointError):
            Guard.load(folder)


def test_edited_threshold_without_fingerprint_is_refused(folder):
    """Main: false_reject_rate 0.05 -> 0.5 with guard_fingerprint deleted loaded silently."""
    meta = _meta(folder)
    meta["config"]["false_reject_rate"] = 0.5
    del meta["guard_fingerprint"]
    _write(folder, meta)
    with pytest.raises(CheckpointError, match="was modified after saving"):
        Guard.load(folder)
    _write(folder, meta, reseal=True)  # even with a recomputed JSON hash
    with pytest.raises(CheckpointError, match="records no guard_fingerprint"):
        Guard.load(folder)
    meta["guard_fingerprint"] = "0" * 16
    _write(folder, meta, reseal=True)
    with pytest.raises(CheckpointError, match="differs from the recorded"):
        Guard.load(folder)


def test_json_list_is_refused(folder):
    (folder / "guard.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="must hold a JSON object, got list"):
        Guard.load(folder)


@pytest.mark.parametrize(
    "cls",
    [
        "safegen_guard.guard.Guard",  # a SAFEGEN class that is not an explainer
        "safegen_guard.no_such_module.Explainer",  # a module that does not exist
        "os.system",
        "safegen_guard.explain.explainer.GuardExplainer.__init__",
    ],
)
def test_explainer_class_is_allow_listed(folder, cls):
    """Main: AttributeError / ModuleNotFoundError instead of CheckpointError."""
    meta = _meta(folder)
    meta["explainer"] = {"class": cls, "config": {}}
    _write(folder, meta, reseal=True)
    with pytest.raises(CheckpointError, match="refusing to build explainer class"):
        Guard.load(folder)
    meta["explainer"] = ["not", "a", "dict"]
    _write(folder, meta, reseal=True)
    with pytest.raises(CheckpointError, match="explainer spec must be"):
        Guard.load(folder)


def test_pickle_in_place_of_the_weights_is_never_unpickled(folder, tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    (path,) = folder.glob("guard-*.safetensors")
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        Guard.load(folder)
    assert not (tmp_path / "pwned").exists()
