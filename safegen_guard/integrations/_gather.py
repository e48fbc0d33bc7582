"""All-gather per-rank images and verdicts into one batch, every verdict field included.

Each rank packs its images and its whole :class:`~safegen_guard.verdict.Verdict` into one
byte tensor (safetensors for the tensors, JSON metadata for the rest: no pickle), the packed
sizes are gathered first, every rank pads to the largest (uneven sizes abort gloo), and the
payloads are gathered and unpacked. Which fields exist and how they concatenate comes from
the verdict's field declarations, so a new field crosses ranks with no change here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from safegen_guard.verdict import Verdict, verdict_schema

__all__ = ["AllGather", "gather_verdicts", "lightning_all_gather", "pack", "unpack"]

AllGather = Callable[[torch.Tensor], torch.Tensor]
"""``all_gather(t) -> [world, *t.shape]``, called on every rank with the same shape."""


def lightning_all_gather(pl_module: Any) -> AllGather:
    """``pl_module.all_gather`` with the world dimension always present (also alone)."""

    def gather(t: torch.Tensor) -> torch.Tensor:
        out = pl_module.all_gather(t.to(pl_module.device))
        return out.cpu() if out.ndim > t.ndim else out.cpu().unsqueeze(0)

    return gather


def gather_verdicts(
    all_gather: AllGather,
    images: torch.Tensor | None,
    verdict: Verdict | None,
    errors: int,
    *,
    verdict_cls: type[Verdict] | None = None,
) -> tuple[torch.Tensor | None, Verdict | None, list[int], int]:
    """Collect every rank's images and verdicts; must be called on every rank.

    Args:
        all_gather: the collective (e.g. :func:`lightning_all_gather` of the module).
        images: ``[n, C, S, S]`` this rank's images, or ``None`` when its check failed.
        verdict: their verdicts (every field is carried), or ``None``.
        errors: this rank's error count (summed over ranks).
        verdict_cls: the class to rebuild verdicts as (default: the local verdict's class,
            or :class:`Verdict` on a rank without one).

    Returns:
        ``(images [N, C, S, S], verdict of N, rank of each image, total errors)`` identical on
        every rank; images and verdict are ``None`` when no rank produced samples.
    """
    cls = verdict_cls or (type(verdict) if verdict is not None else Verdict)
    payload = pack(images, verdict, errors)
    sizes = all_gather(torch.tensor([payload.numel()], dtype=torch.long)).reshape(-1)
    padded = torch.zeros(int(sizes.max()), dtype=torch.uint8)
    padded[: payload.numel()] = payload
    gathered = all_gather(padded)
    parts = [unpack(gathered[r, : int(n)], cls) for r, n in enumerate(sizes.tolist())]
    total_errors = sum(e for _, _, e in parts)
    kept = [(r, x, v) for r, (x, v, _) in enumerate(parts) if v is not None]
    if not kept:
        return None, None, [], total_errors
    ranks = [r for r, _, v in kept for _ in range(len(v))]
    images_all = torch.cat([x for _, x, _ in kept])
    return images_all, Verdict.cat([v for _, _, v in kept]), ranks, total_errors


def pack(images: torch.Tensor | None, verdict: Verdict | None, errors: int) -> torch.Tensor:
    """One rank's images, verdict and error count as a ``uint8`` tensor (safetensors bytes)."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"errors": int(errors), "fields": {}}
    if verdict is not None and images is not None:
        tensors["images"] = images.detach().cpu().contiguous().clone()
        for name, spec in verdict_schema(verdict):
            value = getattr(verdict, name)
            if value is None:
                continue
            if spec.kind == "dict":
                meta["fields"][name] = list(value)
                for j, t in enumerate(value.values()):
                    tensors[f"{name}.{j}"] = t.detach().cpu().contiguous().clone()
            elif spec.kind in ("list", "constant"):
                meta["fields"][name] = value
            else:
                meta["fields"][name] = None
                tensors[name] = value.detach().cpu().contiguous().clone()
    data = st_save(tensors, metadata={"safegen": json.dumps(meta)})
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def unpack(
    payload: torch.Tensor, verdict_cls: type[Verdict] = Verdict
) -> tuple[torch.Tensor | None, Verdict | None, int]:
    """Inverse of :func:`pack`: ``(images, verdict, errors)``, ``None`` for an empty rank."""
    data = payload.contiguous().numpy().tobytes()
    tensors = st_load(data)
    meta = json.loads(_metadata(data)["safegen"])
    if "images" not in tensors:
        return None, None, int(meta["errors"])
    kinds = dict(verdict_schema(verdict_cls))
    kwargs: dict[str, Any] = {}
    for name, value in meta["fields"].items():
        if name not in kinds:
            raise ValueError(
                f"a rank sent the verdict field `{name}`, unknown to {verdict_cls.__name__} "
                f"(fields: {list(kinds)}); every rank must use the same verdict class"
            )
        kind = kinds[name].kind
        if kind == "dict":
            kwargs[name] = {k: tensors[f"{name}.{j}"] for j, k in enumerate(value)}
        elif kind == "list":
            kwargs[name] = [tuple(v) if isinstance(v, list) else v for v in value]
        elif kind == "constant":
            kwargs[name] = value
        else:
            kwargs[name] = tensors[name]
    return tensors["images"], verdict_cls(**kwargs), int(meta["errors"])


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors buffer (``safetensors.torch.load`` drops it)."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]).get("__metadata__", {})
