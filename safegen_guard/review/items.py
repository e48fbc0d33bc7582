"""What there is to review in a folder: a `safegen score` output or a callback's quarantine."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["load_items"]


def load_items(folder: str | Path) -> list[dict]:
    """Items of ``folder``, worst first.

    A scored folder has ``verdicts.jsonl`` (one record per image; the last record of a
    ``(path, index)`` wins, so re-scoring updates an item); its images are the evidence panels
    ``overlay`` (relative to the folder). A quarantine folder has ``<name>.png`` with a
    ``<name>.json`` verdict each.

    Returns:
        dicts with ``id``, ``label``, ``image`` (path relative to ``folder`` or ``None``),
        ``unsafe``, ``p_value``, ``score``, ``reasons`` and ``view_p_values``.

    Raises:
        FileNotFoundError: ``folder`` does not exist or holds neither layout.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"review folder {folder} does not exist")
    log = folder / "verdicts.jsonl"
    if log.is_file():
        items = _from_verdicts(folder, log)
    else:
        items = _from_quarantine(folder)
        if not items:
            raise FileNotFoundError(
                f"{folder} has neither verdicts.jsonl (safegen score --out) nor quarantined "
                "<name>.png + <name>.json pairs"
            )
    return sorted(items, key=lambda it: (-_num(it["score"]), it["id"]))


def _num(score: object) -> float:
    return float("inf") if score == "inf" else float(score or 0.0)


def _item(rid: str, label: str, image: str | None, rec: dict) -> dict:
    return {
        "id": rid,
        "label": label,
        "image": image,
        "unsafe": bool(rec.get("unsafe", False)),
        "p_value": float(rec.get("p_value", 1.0)),
        "score": rec.get("score", 0.0),
        "reasons": list(rec.get("reasons", [])),
        "view_p_values": dict(rec.get("view_p_values", {})),
    }


def _from_verdicts(folder: Path, log: Path) -> list[dict]:
    by_id: dict[str, dict] = {}
    for line in log.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a cut-off last line is not an item
        if "unsafe" not in rec or "path" not in rec:
            continue
        rid = f"{rec['path']}#{rec.get('index', 0)}"
        overlay = rec.get("overlay")
        image = overlay if overlay and (folder / overlay).is_file() else None
        label = Path(rec["path"]).name + (f" [{rec['index']}]" if rec.get("index") else "")
        by_id[rid] = _item(rid, label, image, rec)
    return list(by_id.values())


def _from_quarantine(folder: Path) -> list[dict]:
    items = []
    for png in sorted(folder.rglob("*.png")):
        meta = png.with_suffix(".json")
        if not meta.is_file():
            continue
        rec = json.loads(meta.read_text())
        rel = png.relative_to(folder).as_posix()
        items.append(_item(rel, png.name, rel, rec))
    return items
