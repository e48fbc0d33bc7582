"""Every file of a full guard folder, every byte position class, every key: CheckpointError.

The guard here has everything a saved guard can hold (views, calibration, an explainer, a
memorization index, provenance), so every key ``guard.json`` can have is present. Files up to
``EXHAUSTIVE_BYTES`` have every byte flipped; larger ones (the weights) have their first and
last 256 bytes (safetensors header, last tensor) and 256 random positions flipped, each in a
fresh copy of the folder state.
"""

from __future__ import annotations

import json
import random
import shutil

import pytest

from safegen_guard import Guard
from safegen_guard.checkpoint import meta_digest
from safegen_guard.errors import CheckpointError
from safegen_guard.explain import GuardExplainer
from safegen_guard.io import json_bytes
from safegen_guard.memorization import EncoderConfig, MemorizationConfig, MemorizationIndex

EXHAUSTIVE_BYTES = 64 * 1024
PROVENANCE = {"data": "mni152", "profile": "tiny", "explainer": "unfitted (test)"}


@pytest.fixture(scope="module")
def saved(tiny_guard, tiny_real, tmp_path_factory):
    """A copy of the session's tiny guard with an explainer, an index and provenance, saved."""
    folder = tmp_path_factory.mktemp("full") / "guard"
    guard = Guard.load(tiny_guard.save(folder))
    guard.attach_explainer(GuardExplainer(image_size=32, n_background=4))
    config = MemorizationConfig(
        alpha=0.1, k=4, encoder=EncoderConfig(channels=4, dim=16, steps=5, batch_size=16)
    )
    index = MemorizationIndex.fit(
        tiny_real["train"][:16], tiny_real["val"], config=config, accelerator="cpu"
    )
    guard.attach_memorization(index).save(folder, provenance=PROVENANCE)
    return folder


@pytest.fixture
def folder(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "g")


def _key_paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*prefix, k)
            yield from _key_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _key_paths(v, (*prefix, i))


def _positions(size: int) -> list[int]:
    if size <= EXHAUSTIVE_BYTES:
        return list(range(size))
    rng = random.Random(size)
    middle = rng.sample(range(256, size - 256), 256)
    return sorted({*range(256), *middle, *range(size - 256, size)})


def test_the_folder_holds_the_whole_guard(folder):
    names = sorted(p.name for p in folder.iterdir())
    assert names[0] == "guard.json" or names[-1] == "guard.json"
    assert len(names) == 2, names  # guard.json + its weights: nothing unverified beside them
    meta = json.loads((folder / "guard.json").read_text())
    assert meta["provenance"] == PROVENANCE
    assert {"explainer", "memorization", "config", "guard_fingerprint"} <= set(meta)
    loaded = Guard.load(folder)
    assert loaded.provenance == PROVENANCE
    assert loaded.explainer is not None and loaded.memorization is not None


def test_any_byte_changed_in_any_file_is_refused(folder):
    accepted = []
    for path in sorted(folder.iterdir()):
        original = path.read_bytes()
        for i in _positions(len(original)):
            data = bytearray(original)
            data[i] ^= 0x01 if data[i] != ord("\n") else 0x20
            path.write_bytes(bytes(data))
            try:
                Guard.load(folder)
                accepted.append((path.name, i))
            except CheckpointError:
                pass
        path.write_bytes(original)
        Guard.load(folder)  # restored: loads again
    assert accepted == []


def test_any_key_removed_is_refused(folder):
    path = folder / "guard.json"
    original = json.loads(path.read_text())
    keys = list(_key_paths(original))
    assert len(keys) > 60
    for key in keys:
        if isinstance(key[-1], int):
            continue  # list items are values, not keys
        meta = json.loads(json.dumps(original))
        node = meta
        for k in key[:-1]:
            node = node[k]
        del node[key[-1]]
        path.write_bytes(json_bytes(meta))
        with pytest.raises(CheckpointError):
            Guard.load(folder)


def test_a_key_removed_and_resealed_never_changes_a_decision(folder):
    """An editor who also recomputes ``meta_sha256``: refused, or the very same guard.

    A removed key that a default replaces with the saved value (or that records no decision,
    like provenance) may load; the guard's fingerprint then proves the decisions unchanged.
    """
    path = folder / "guard.json"
    original = json.loads(path.read_text())
    fingerprint = original["guard_fingerprint"]
    loaded = []
    for key in _key_paths(original):
        if isinstance(key[-1], int) or key == ("meta_sha256",):
            continue
        meta = json.loads(json.dumps(original))
        node = meta
        for k in key[:-1]:
            node = node[k]
        del node[key[-1]]
        meta["meta_sha256"] = meta_digest(meta)
        path.write_bytes(json_bytes(meta))
        try:
            guard = Guard.load(folder)
        except CheckpointError:
            continue
        assert guard.fingerprint == fingerprint, key
        loaded.append(key)
    assert ("config", "image_size") not in loaded  # tiny: 32 px, the default is 64
    assert ("guard_fingerprint",) not in loaded
