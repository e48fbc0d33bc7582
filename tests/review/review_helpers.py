"""Review-app and study folders made without a guard (fast), shared by the review tests."""

from __future__ import annotations

import json

import numpy as np
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


def make_study(folder, n_cases: int = 4, washout: int | None = None):
    """A study of ``n_cases`` synthetic cases (half unsafe) written without a guard."""
    from safegen_guard.review.study import write_study

    rng = np.random.default_rng(1)
    cases = []
    for k in range(n_cases):
        cid = f"case{k:03d}"
        for sub in ("images", "panels"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            arr = rng.integers(0, 256, (32, 32), dtype=np.uint8)
            Image.fromarray(arr).save(folder / sub / f"{cid}.png")
        cases.append(
            {
                "id": cid,
                "image": f"images/{cid}.png",
                "panel": f"panels/{cid}.png",
                "truth": "unsafe" if k % 2 else "safe",
                "source": "synthetic",
                "unsafe": bool(k % 2),
                "p_value": 0.01 if k % 2 else 0.4,
                "reasons": ["noise"] if k % 2 else [],
            }
        )
    write_study(folder, cases, seed=0, washout=washout)
    return folder
