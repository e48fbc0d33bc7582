"""`safegen study create`: cases from real slices, injected artifacts and generated samples."""

from __future__ import annotations

from pathlib import Path

import torch

from safegen_guard.review.study import write_study

__all__ = ["build_cases", "create_study"]


def create_study(
    folder: str | Path,
    guard: torch.nn.Module,
    *,
    data: str = "mni152",
    n_clean: int = 20,
    n_artifact: int = 20,
    generated: list[tuple[Path, str]] | None = None,
    seed: int = 0,
    washout: int | None = None,
) -> Path:
    """Build the cases, score them with ``guard`` and write the study folder.

    Clean cases are real test slices of ``data``; artifact cases are other test slices with a
    registered artifact injected (kinds in turn, strong severity); generated cases are the
    given ``(png_path, truth)`` pairs.

    Args:
        folder: the study folder (``images/``, ``panels/``, ``study.json``).
        guard: a fitted guard (explained if it has an explainer).
        data: data set name or path of the real test slices.
        n_clean: real slices, truth ``safe``.
        n_artifact: slices with an injected artifact, truth ``unsafe``.
        generated: extra images with their truth (``"safe"``/``"unsafe"``).
        seed: seed of the slice choice, the artifacts and the schedule.
        washout: see :func:`~safegen_guard.review.study.write_study`.

    Returns:
        The path of ``study.json``.
    """
    from safegen_guard.data import load_dataset

    size = guard.config.image_size
    test = load_dataset(data, "test", size, variants=1, seed=seed).images
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(test), generator=g)[: n_clean + n_artifact]
    if len(pick) < n_clean + n_artifact:
        raise ValueError(
            f"{data} has {len(test)} test slices, fewer than n_clean + n_artifact = "
            f"{n_clean + n_artifact}"
        )
    images, truths, sources = _clean_and_corrupted(test[pick], n_clean, g)
    for path, truth in generated or []:
        from safegen_guard.cli import read_images
        from safegen_guard.review.outputs import resize_to

        images.append(resize_to(read_images(Path(path)), size)[0])
        truths.append(truth)
        sources.append(f"generated:{Path(path).name}")
    cases = build_cases(folder, guard, torch.stack(images), truths, sources, seed)
    return write_study(folder, cases, seed=seed, washout=washout)


def _clean_and_corrupted(
    x: torch.Tensor, n_clean: int, g: torch.Generator
) -> tuple[list[torch.Tensor], list[str], list[str]]:
    from safegen_guard.artifacts import inject, list_artifacts

    kinds = list_artifacts()
    images, truths, sources = list(x[:n_clean]), ["safe"] * n_clean, ["real"] * n_clean
    for k, img in enumerate(x[n_clean:]):
        kind = kinds[k % len(kinds)]
        corrupted, _ = inject(img[None], kind, "strong", g)
        images.append(corrupted[0])
        truths.append("unsafe")
        sources.append(f"artifact:{kind}")
    return images, truths, sources


def build_cases(
    folder: str | Path,
    guard: torch.nn.Module,
    images: torch.Tensor,
    truths: list[str],
    sources: list[str],
    seed: int,
) -> list[dict]:
    """Score ``images`` ``[N, 1, S, S]``, write each one's plain view and evidence panel.

    Cases are shuffled (seeded) so their ids say nothing about their truth.
    """
    from safegen_guard.review.outputs import MAP_LABELS
    from safegen_guard.viz import (
        evidence_mask,
        save_png,
        to_uint8,
        verdict_panel,
        verdict_titles,
    )

    folder = Path(folder)
    explain = getattr(guard, "explainer", None) is not None
    verdict = guard.evaluate(images, explain=explain)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed + 1))
    scale = max(1, -(-256 // images.shape[-1]))
    cases = []
    for k, i in enumerate(order.tolist()):
        cid = f"case{k:03d}"
        v = verdict.select([i])
        plain = to_uint8(images[i]).repeat(scale, 0).repeat(scale, 1)
        save_png(plain, folder / "images" / f"{cid}.png")
        maps = {lab: getattr(v, f)[0] for f, lab in MAP_LABELS.items() if getattr(v, f) is not None}
        maps = maps or {"anomaly map": v.anomaly_map[0]}
        mask = evidence_mask(v)[0]
        panel = verdict_panel(images[i], maps, mask, verdict_titles(v)[0], min_size=256)
        save_png(panel, folder / "panels" / f"{cid}.png")
        cases.append(
            {
                "id": cid,
                "image": f"images/{cid}.png",
                "panel": f"panels/{cid}.png",
                "truth": truths[i],
                "source": sources[i],
                "unsafe": bool(v.unsafe[0]),
                "p_value": float(v.p_value[0]),
                "reasons": list(v.reasons[0]),
            }
        )
    return cases
