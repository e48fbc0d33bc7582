"""A scored folder (verdicts.jsonl + evidence panels) made without a guard, for app tests."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image


def make_scored_folder(folder, n: int = 12):
    """``n`` records (every third safe) with a small panel PNG each, plus a secret outside."""
    (folder / "overlays").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        name = f"overlays/img{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (16, 48, 3), dtype=np.uint8)).save(folder / name)
        unsafe = i % 3 != 0
        lines.append(
            {
                "path": f"/data/in/img{i:02d}.png",
                "index": 0,
                "unsafe": unsafe,
                "p_value": 0.01 * (i + 1) if unsafe else 0.5,
                "score": float(n - i),
                "reasons": (["noise"] if i % 2 else ["ring", "texture"]) if unsafe else [],
                "view_p_values": {"noise": 0.01, "ring": 0.3},
                "overlay": name,
            }
        )
    (folder / "verdicts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (folder.parent / "secret.txt").write_text("do not serve")
    return folder


@pytest.fixture
def scored_folder(tmp_path):
    return make_scored_folder(tmp_path / "scored")
