"""Learned realism views: evidence learned from real scans, not built for one artifact family.

All three read the realism network (:mod:`~safegen_guard.detector.realism`), trained on real
slices only with the foreign-patch task; one forward pass per batch serves them all.

============= ================================================================== ======= =====
view          statistic (higher = more anomalous)                                default map
============= ================================================================== ======= =====
fpi           top-1% mean of the predicted foreign-patch blend factor            no      yes
patch_density top-1% mean of the nearest-neighbour distance of each patch's       CT      yes
              features to a coreset memory bank of real patches (PatchCore)
ams           the seed's multi-scale feature distance A_ms between ``x`` and its  no      yes
              bottleneck reconstruction, in the realism network's features
image_density mean distance of the whole image's coarse feature layout to its k   MRI     no
              nearest real training images (kNN density, faiss)
============= ================================================================== ======= =====

``patch_density`` asks whether every *patch* looks like some real patch; ``image_density``
asks whether the *image as a whole* (where which structure sits, how bright and how large
it is) looks like some real image. Generated samples can pass the first and fail the second:
a DDPM whose slices are brighter and larger than every real slice, yet locally typical.

Which are on by default was decided by the leave-one-family-out protocol
(``python -m benchmarks.loo``, docs/realism.md), never on the families a view is tested on.
"""

from __future__ import annotations

import math

import faiss
import numpy as np
import torch
import torch.nn.functional as F

from safegen_guard.detector import ops
from safegen_guard.detector.registry import register_view
from safegen_guard.detector.views import ScoringContext, View, top_mean

__all__ = [
    "FPIView",
    "PatchDensityView",
    "FeatureDistanceView",
    "ImageDensityView",
    "coreset",
    "layout_features",
    "NearestNeighbours",
]

EXACT_SEARCH_LIMIT = 65_536
"""Banks up to this many patches are searched exactly; larger ones with an IVF index."""


class FPIView(View):
    """Foreign-patch evidence: where the realism network sees something that is not real.

    Statistic: mean of the top 1 % of the whole frame of the predicted blend factor (ghosts
    and wrap-around sit outside the body); map: the blend factor on the foreground, in
    ``[0, 1]``.
    """

    name = "fpi"

    def forward(self, ctx: ScoringContext) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B]`` statistic and ``[B, 1, H, W]`` map in ``[0, 1]``."""
        p = ctx.realism.probability
        return top_mean(p, torch.ones_like(ctx.foreground)), p * ctx.foreground


def patch_features(features: list[torch.Tensor]) -> torch.Tensor:
    """PatchCore-style patch descriptors from the realism encoder.

    The 1/4- and 1/8-resolution features are concatenated at 1/4 resolution and averaged over
    each patch's 3 x 3 neighbourhood.

    Args:
        features: The realism network's encoder features (1/2, 1/4, 1/8 resolution).

    Returns:
        ``[B, D, H/4, W/4]`` descriptors.
    """
    mid, deep = features[1], features[2]
    deep = F.interpolate(deep, size=mid.shape[-2:], mode="bilinear", align_corners=False)
    return F.avg_pool2d(torch.cat([mid, deep], 1), 3, stride=1, padding=1)


def coreset(
    points: torch.Tensor, k: int, *, candidates: int = 50_000, dim: int = 32, seed: int = 0
) -> torch.Tensor:
    """Greedy k-center coreset (PatchCore): ``k`` rows of ``points`` that cover all of them.

    For speed the greedy farthest-point search runs on at most ``candidates`` random rows,
    in a random Gaussian projection to ``dim`` dimensions (distances are preserved up to a
    small factor, Johnson-Lindenstrauss).

    Args:
        points: ``[N, D]`` float.
        k: Coreset size (all rows are returned when ``N <= k``).
        candidates: Rows the greedy search considers.
        dim: Projection dimension.
        seed: Seed of the candidate draw, projection and start point.

    Returns:
        ``[min(k, N), D]`` selected rows.
    """
    n = points.shape[0]
    if n <= k:
        return points.clone()
    g = torch.Generator().manual_seed(seed)
    pool = points[torch.randperm(n, generator=g)[: max(k, candidates)]]
    proj = pool @ (torch.randn(pool.shape[1], dim, generator=g) / math.sqrt(dim))
    chosen = torch.empty(k, dtype=torch.long)
    chosen[0] = int(torch.randint(len(pool), (1,), generator=g))
    dist = torch.full((len(pool),), math.inf)
    for i in range(1, k):
        dist = torch.minimum(dist, ((proj - proj[chosen[i - 1]]) ** 2).sum(1))
        chosen[i] = int(dist.argmax())
    return pool[chosen].clone()


class NearestNeighbours:
    """Nearest-neighbour distance to a fixed bank with faiss (exact, or IVF for big banks).

    Args:
        bank: ``[K, D]`` float bank.
        nprobe: IVF lists searched per query (big banks only).
    """

    def __init__(self, bank: torch.Tensor, nprobe: int = 8) -> None:
        self._args = (bank.detach().cpu(), nprobe)
        data = np.ascontiguousarray(bank.detach().cpu().numpy(), dtype=np.float32)
        k, d = data.shape
        if k <= EXACT_SEARCH_LIMIT:
            self.index = faiss.IndexFlatL2(d)
        else:
            nlist = int(4 * math.sqrt(k))
            self.index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
            self.index.train(data)
            self.index.nprobe = nprobe
        self.index.add(data)

    def __reduce__(self) -> tuple:
        # copy/pickle by rebuilding from the bank: faiss's own index serialisation breaks when
        # SimpleITK (a MONAI reader) is imported (both register SWIG vector types), which made
        # ``copy.deepcopy(guard)`` fail
        return (NearestNeighbours, self._args)

    def distance(self, queries: torch.Tensor, k: int = 1) -> torch.Tensor:
        """``[Q, D]`` queries -> ``[Q]`` mean Euclidean distance to the ``k`` nearest bank rows.

        ``k`` is capped at the bank size.
        """
        q = np.ascontiguousarray(queries.detach().cpu().numpy(), dtype=np.float32)
        d2, _ = self.index.search(q, max(1, min(int(k), self.index.ntotal)))
        return torch.from_numpy(d2).clamp_min(0.0).sqrt().mean(1)


class PatchDensityView(View):
    """Patch-feature density: distance of each patch to its nearest real patch (PatchCore).

    The memory bank holds realism-network descriptors of real *training* patches
    (:func:`patch_features`), reduced to ``bank_size`` rows by a greedy coreset
    (:func:`coreset`) and searched with faiss (:class:`NearestNeighbours`). Statistic: the
    top-1 % mean over the frame of the up-sampled distance map; map: that distance on the
    foreground.

    Its map stays out of the combined map and mask (``in_mask``): the coarse patch grid,
    up-sampled, marks whole patches, and with it the mask's Dice on the local families of
    the leave-one-family-out protocol was lower on both modalities in every held-out fold
    (``python -m benchmarks.mask_choice``; CT default views, validation-only kinds, before
    averaging: 0.348 with it, 0.381 without).

    Args:
        bank_size: Coreset size ``K``.
        seed: Seed of the coreset.
    """

    name = "patch_density"
    in_mask = False
    fit_on_training = True

    def __init__(self, bank_size: int = 4096, seed: int = 0) -> None:
        super().__init__()
        self.bank_size, self.seed = bank_size, seed
        self.register_buffer("bank", torch.zeros(0, 0))
        self._nn: NearestNeighbours | None = None

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        if prefix + "bank" in state_dict:  # the bank's size comes from the data it was fitted on
            self.bank = torch.empty_like(state_dict[prefix + "bank"])
        self._nn = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def fit(self, ctx: ScoringContext) -> None:
        """Build the coreset bank from real (training) images."""
        f = patch_features(ctx.realism.features)
        points = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).float()
        self.bank = coreset(points, self.bank_size, seed=self.seed)
        self._nn = None

    def forward(self, ctx: ScoringContext) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B]`` statistic and ``[B, 1, H, W]`` distance map."""
        if self.bank.numel() == 0:
            raise RuntimeError("patch_density has an empty memory bank: fit it first")
        if self._nn is None:
            self._nn = NearestNeighbours(self.bank)
        f = patch_features(ctx.realism.features)
        b, d, h, w = f.shape
        dist = self._nn.distance(f.permute(0, 2, 3, 1).reshape(-1, d)).view(b, 1, h, w)
        m = F.interpolate(dist.to(ctx.x), size=ctx.x.shape[-2:], mode="bilinear")
        return top_mean(m, torch.ones_like(ctx.foreground)), m * ctx.foreground


class FeatureDistanceView(View):
    """The seed's multi-scale feature distance ``A_ms`` between ``x`` and its reconstruction.

    ``A_ms(x) = sum_l w_l * mean_c (f_l(x) - f_l(G(E(x))))^2`` over the realism network's
    encoder levels ``l`` (1/2, 1/4, 1/8 resolution), each level up-sampled to full resolution
    and normalised by its mean on real images (``w_l = 1 / mean_real``). Statistic: top-1 %
    foreground mean of the blurred map.
    """

    name = "ams"

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("level_scale", torch.ones(3))

    def _levels(self, ctx: ScoringContext) -> list[torch.Tensor]:
        size = ctx.x.shape[-2:]
        pairs = zip(ctx.realism.features, ctx.realism_recon.features)
        return [
            F.interpolate((a - b).pow(2).mean(1, keepdim=True), size=size, mode="bilinear")
            for a, b in pairs
        ]

    def fit(self, ctx: ScoringContext) -> None:
        """Fit each level's mean distance on real images."""
        levels = self._levels(ctx)
        self.level_scale.copy_(torch.stack([m.mean() for m in levels]).clamp_min(1e-8))

    def forward(self, ctx: ScoringContext) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B]`` statistic and ``[B, 1, H, W]`` map."""
        levels = self._levels(ctx)
        m = sum(lv / s for lv, s in zip(levels, self.level_scale)) / len(levels)
        m = ops.gaussian_blur(m, 1.0) * ctx.foreground
        return top_mean(m, ctx.foreground), m


def layout_features(features: list[torch.Tensor], grid: int = 4) -> torch.Tensor:
    """Whole-image descriptors: the realism encoder's 1/4-resolution features on a coarse grid.

    Args:
        features: The realism network's encoder features (1/2, 1/4, 1/8 resolution).
        grid: Cells per side; the same at every image size, so the descriptor describes the
            layout of the frame (which structure where), not pixel detail.

    Returns:
        ``[B, C * grid * grid]`` descriptors.
    """
    return F.adaptive_avg_pool2d(features[1].float(), grid).flatten(1)


class ImageDensityView(View):
    """Whole-image density: how far the image's feature layout is from every real image.

    The descriptor (:func:`layout_features`) of each real *training* image is standardised
    per dimension and kept in a bank (a seeded random subset of ``max_bank`` rows when there
    are more); the statistic is the mean Euclidean distance of the standardised descriptor
    to its ``k`` nearest bank rows (faiss, :class:`NearestNeighbours`). No pixel map: the
    evidence is about the image as a whole.

    Chosen by the leave-one-family-out protocol for MRI (first in 32 of 42 held-out-family
    selections), never for CT; measured on generated samples in docs/realism.md.

    Args:
        k: Neighbours averaged.
        grid: Descriptor grid cells per side.
        max_bank: Most bank rows kept.
        seed: Seed of the subset draw.
    """

    name = "image_density"
    has_map = False
    fit_on_training = True

    def __init__(
        self, k: int = 5, grid: int = 4, max_bank: int = EXACT_SEARCH_LIMIT, seed: int = 0
    ) -> None:
        super().__init__()
        if k < 1 or grid < 1 or max_bank < 1:
            raise ValueError(f"k, grid and max_bank must be >= 1, got {k}, {grid}, {max_bank}")
        self.k, self.grid, self.max_bank, self.seed = k, grid, max_bank, seed
        for name in ("bank", "center", "scale"):
            self.register_buffer(name, torch.zeros(0))
        self._nn: NearestNeighbours | None = None

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        for name in ("bank", "center", "scale"):  # sizes come from the data it was fitted on
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        self._nn = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def fit(self, ctx: ScoringContext) -> None:
        """Standardise and keep the descriptors of real (training) images."""
        f = layout_features(ctx.realism.features, self.grid)
        std = f.std(0) if len(f) > 1 else torch.ones(f.shape[1])
        self.center = f.mean(0)
        # dimensions that never vary on real images would otherwise dominate every distance
        self.scale = std.clamp_min(1e-2 * float(std.mean()) + 1e-8)
        if len(f) > self.max_bank:
            g = torch.Generator().manual_seed(self.seed)
            f = f[torch.randperm(len(f), generator=g)[: self.max_bank]]
        self.bank = (f - self.center) / self.scale
        self._nn = None

    def forward(self, ctx: ScoringContext) -> tuple[torch.Tensor, None]:
        """``[B]`` statistic (mean distance to the ``k`` nearest real images), no map."""
        if self.bank.numel() == 0:
            raise RuntimeError("image_density has an empty bank: fit it first")
        if self._nn is None:
            self._nn = NearestNeighbours(self.bank.view(-1, self.center.numel()))
        q = (layout_features(ctx.realism.features, self.grid) - self.center) / self.scale
        return self._nn.distance(q, self.k).to(ctx.x), None


register_view(
    "fpi",
    lambda size: FPIView(),
    default=False,
    needs_realism=True,
    summary="foreign-patch evidence of the self-supervised realism network",
)
register_view(
    "patch_density",
    lambda size: PatchDensityView(),
    default="ct",
    needs_realism=True,
    summary="distance of each patch to a coreset bank of real patches (faiss)",
)
register_view(
    "ams",
    lambda size: FeatureDistanceView(),
    default=False,
    needs_realism=True,
    summary="multi-scale feature distance between the image and its reconstruction",
)
register_view(
    "image_density",
    lambda size: ImageDensityView(),
    default="mri",
    needs_realism=True,
    summary="distance of the whole image's feature layout to its nearest real images (faiss)",
)
