"""Calibrated decisions from real held-out images only.

The rule, in full (no anomalous image is ever needed):

0. **Condition on anatomy (Mondrian calibration).** Scores depend on the anatomy in the slice
   (measured: a single threshold gave 0-40 % false rejections depending on slice position).
   Slice position is unknown for a generated image, but the share of the frame covered by
   the head/body is not: images are put in ``n_bins`` bins by foreground fraction (bin edges
   = quantiles of the real calibration images), and steps 1-3 run within each bin.
1. **Put every view on one scale: tail significance.** On real reference images (calibration
   half A, ``n_A`` per bin) each view's statistic becomes ``s_v(x) = -log10 S_v(x)``, with
   ``S_v`` the share of reference images scoring at least ``stat_v(x)`` (the empirical
   survival function, linearly interpolated between reference values, continued beyond the
   largest one by the exponential tail fitted to the top decile; see
   :func:`tail_significance`). Unlike a z-score this needs no assumption on the shape of a
   view's distribution: heavy-tailed learned views and bounded hand-made ones speak the same
   language ("how rare among real scans").
2. **Fuse.** The image statistic is ``T(x) = max_v s_v(x)``: an image is as suspicious as its
   rarest view.
3. **Calibrate.** On the other real half (B, ``n`` images) the split-conformal p-value is
   ``p(x) = (1 + #{i : T_i >= T(x)}) / (n + 1)``, the share of real calibration images scoring
   at least as high. ``unsafe = p <= alpha`` with ``alpha`` the requested false-reject rate;
   for exchangeable real images ``P(unsafe) = floor(alpha (n + 1)) / (n + 1) <= alpha``
   (``n`` counts the calibration images of the test image's bin).
   Equivalently ``unsafe = T > t*`` with ``t*`` the ``(floor(alpha (n+1)))``-th largest
   ``T_i``; the views with ``s_v > t*`` are the verdict's reasons.
3a. **Preparation groups.** Calibration images may carry a group label: the valid
   preparation that produced them (e.g. augmented vs plain draws, a scanner or a site). The
   rate must then hold for every group, not only on their mixture (measured: a CT guard at
   32 px calibrated on a 50/50 mixture rejected 1.7 % of plain and 8-13 % of augmented real
   slices). Within each bin, every group ``g`` gives its own p-value ``p_g`` against its own
   images, and ``p(x) = max_g p_g(x)``: ``P(p <= alpha) <= P(p_g <= alpha) <= alpha`` for an
   image of any group. Equivalently ``t* = max_g t*_g``. With one group this is step 3.
   The rate is then at most ``alpha`` for every group and below it for a group whose scores
   are narrower than another's (plain draws beside augmented ones). A user who knows which
   preparation the judged images follow restricts the decision to those groups
   (:meth:`Calibrator.select_groups`, ``Guard.for_preparation``): the rate is ``alpha`` for
   them and the guard is as sensitive as their calibration images allow.
3b. **Severity.** The conformal p-value is a step function with a floor of ``1 / (n + 1)``:
   every clearly rejected image would get the same value. The verdict's ``score`` is
   therefore ``-log10`` of the same tail computed continuously
   (:func:`tail_significance` of ``T`` against half B), shifted per bin by a constant so that
   it equals ``-log10(alpha)`` exactly at the bin's threshold ``t*`` (with groups: the
   smallest such shifted value over the groups, matching ``max_g p_g``): strictly increasing in
   ``T``, about ``-log10 p`` (the shift is the gap between ``alpha`` and the conformal level
   at ``t*``, 0.02 for 384 calibration images), and beyond the largest calibration value it
   keeps growing with ``T`` (exponential tail), so rejects are ranked by how far they lie
   outside everything real. It agrees with the decision: ``unsafe`` iff
   ``score > -log10(alpha)``.
4. **Pixels.** Each view's map is divided by its 99th percentile on real foreground pixels;
   the combined map is the pixel-wise maximum over the views whose map enters the mask
   (``View.in_mask``), box-averaged over ``(2 r + 1)^2`` pixels (``map_radius`` ``r``, see
   :func:`map_radius`); ``tau`` is its ``1 - pixel_fpr`` quantile on real foreground pixels.
   The reported map is ``a = c / (c + tau)`` in ``[0, 1)``, so the mask ``a > 0.5`` is
   exactly ``c > tau``. The averaging, the views and the default ``pixel_fpr`` (per modality:
   ``safegen_guard.config.PIXEL_FPR_DEFAULTS``) were chosen by the mask's Dice on the local
   families of the leave-one-family-out protocol, each held-out family chosen without
   (docs/realism.md): a mask of separate hot pixels matches no region a clinician would
   outline.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from safegen_guard.errors import NotFittedError
from safegen_guard.validation import check_probability

__all__ = [
    "foreground_fraction",
    "conformal_p_values",
    "conformal_threshold",
    "min_calibration_size",
    "tail_significance",
    "check_groups",
    "Calibrator",
]

_MAX_QUANTILE_ELEMENTS = 2_000_000

MAP_RADIUS_AT_64: int = 3
"""Box radius (pixels) of the combined map's averaging at 64 px; scaled with the size."""


def map_radius(image_size: int, radius_at_64: int = MAP_RADIUS_AT_64) -> int:
    """Box radius of the combined map's averaging for ``image_size`` px images.

    ``radius_at_64`` scaled with the size, at least 1 unless it is 0: the default gives 2 at
    32 px, 3 at 64, 6 at 128 (the same extent of the field of view).
    """
    if radius_at_64 == 0:
        return 0
    return max(1, round(radius_at_64 * image_size / 64))


def max_average(maps: torch.Tensor, radius: int) -> torch.Tensor:
    """``[B, M, H, W]`` -> ``[B, 1, H, W]``: pixel-wise maximum, box-averaged.

    The box is ``(2 radius + 1)^2`` pixels; at the border only the pixels inside the frame
    are averaged. ``radius`` 0: the maximum alone.
    """
    c = maps.amax(1, keepdim=True)
    if radius:
        c = F.avg_pool2d(c, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    return c


def foreground_fraction(foreground: torch.Tensor) -> torch.Tensor:
    """The Mondrian conditioning value: share of the frame that is head/body.

    Args:
        foreground: ``[B, 1, H, W]`` bool foreground masks.

    Returns:
        ``[B]`` float in ``[0, 1]``.
    """
    return foreground.flatten(1).float().mean(1)


def conformal_p_values(reference: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Split-conformal p-values: share of reference scores at least as high.

    Args:
        reference: ``[n]`` statistics of real calibration images.
        scores: ``[B]`` statistics to test (higher = more anomalous).

    Returns:
        ``[B]`` float64 p-values ``(1 + #{reference >= score}) / (n + 1)`` in ``(0, 1]``
        (float64 so that ``p <= alpha`` agrees with Python floats at the boundary).

    Example:
        >>> conformal_p_values(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.5, 0.0]))
        tensor([0.5000, 1.0000], dtype=torch.float64)
    """
    if reference.ndim != 1 or reference.numel() == 0:
        shape = tuple(reference.shape)
        raise ValueError(f"`reference` must be a non-empty 1-D tensor, got shape {shape}")
    ge = (reference[None, :] >= scores[:, None]).sum(1)
    return (1.0 + ge.to(torch.float64)) / (reference.numel() + 1.0)


def min_calibration_size(alpha: float) -> int:
    """Fewest real calibration images with which a conformal test at ``alpha`` can reject.

    A p-value ``(1 + #{reference >= score}) / (n + 1)`` can reach ``alpha`` only when
    ``floor(alpha (n + 1)) >= 1``, i.e. ``n >= 1 / alpha - 1`` (with a tolerance for
    floating-point ``1 / alpha``).

    Example:
        >>> min_calibration_size(0.05), min_calibration_size(0.01)
        (19, 99)
    """
    return math.ceil(1.0 / alpha - 1e-9) - 1


def conformal_threshold(reference: torch.Tensor, alpha: float) -> float:
    """The statistic threshold ``t*`` with ``score > t*  <=>  p-value <= alpha``.

    Args:
        reference: ``[n]`` statistics of real calibration images.
        alpha: Requested false-reject rate in ``(0, 1)``.

    Returns:
        ``t*``, the ``floor(alpha (n+1))``-th largest reference statistic.

    Raises:
        ValueError: ``n`` is too small for ``alpha`` (``floor(alpha (n+1)) < 1``): no image
            could ever be rejected.

    Example:
        >>> conformal_threshold(torch.arange(1.0, 20.0), 0.1)
        18.0
    """
    alpha = check_probability(alpha, "false_reject_rate")
    n = reference.numel()
    k = math.floor(alpha * (n + 1) + 1e-9)
    if k < 1:
        need = min_calibration_size(alpha)
        raise ValueError(
            f"a false-reject rate of {alpha} needs at least {need} real calibration images, got {n}"
        )
    return float(reference.sort(descending=True).values[k - 1])


def check_groups(groups: object, n: int, name: str = "groups") -> torch.Tensor:
    """Validate preparation-group labels; ``None`` means one group.

    Args:
        groups: ``None`` or ``[n]`` integer labels (tensor, list or array).
        n: Number of images they label.
        name: Argument name for error messages.

    Returns:
        ``[n]`` long tensor (all zeros for ``None``).

    Raises:
        TypeError: labels that are not integers.
        ValueError: labels of the wrong shape.
    """
    if groups is None:
        return torch.zeros(n, dtype=torch.long)
    g = torch.as_tensor(groups)
    if g.dtype.is_floating_point or g.dtype.is_complex or g.dtype == torch.bool:
        raise TypeError(f"`{name}` must hold integer group labels, got dtype {g.dtype}")
    if tuple(g.shape) != (n,):
        shape = tuple(g.shape)
        raise ValueError(f"`{name}` must have shape ({n},), one label per image, got {shape}")
    return g.to(torch.long).clone()


def tail_significance(
    reference: torch.Tensor, values: torch.Tensor, tail: float = 0.1
) -> torch.Tensor:
    """``-log10`` of a continuous survival function of ``reference`` evaluated at ``values``.

    Within the reference range the survival ``S(x)`` is the conformal share
    ``(1 + #{r >= x}) / (n + 1)`` linearly interpolated between consecutive sorted reference
    values (so it is continuous and strictly decreasing there). Beyond the largest reference
    value ``r_max`` it continues as the exponential tail fitted to the top ``tail`` share
    (at least 3 values): ``S(x) = S(r_max) * exp(-(x - r_max) / theta)`` with ``theta`` the
    mean excess of those values over the largest value below them. Below the smallest
    reference value ``S = 1``.

    Args:
        reference: ``[n]`` real statistics (``n >= 1``).
        values: ``[B]`` statistics to rank.
        tail: Share of the reference used for the tail fit.

    Returns:
        ``[B]`` float64 ``-log10 S(values)`` in ``[0, inf)``, non-decreasing in ``values``.

    Example:
        >>> tail_significance(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 3.0]))
        tensor([0.0000, 0.3010], dtype=torch.float64)
    """
    if reference.ndim != 1 or reference.numel() == 0:
        shape = tuple(reference.shape)
        raise ValueError(f"`reference` must be a non-empty 1-D tensor, got shape {shape}")
    r = reference.double().sort().values
    v = values.double()
    n = r.numel()
    # survival at the i-th smallest value (0-based): (1 + n - i) / (n + 1), 1 below the minimum
    surv = (1.0 + n - torch.arange(n, dtype=torch.float64)) / (n + 1.0)
    knots_x = torch.cat([r[:1], r])  # S = 1 just at/below the smallest value
    knots_s = torch.cat([torch.ones(1, dtype=torch.float64), surv])
    idx = torch.searchsorted(knots_x, v, right=True).clamp(1, n)  # interval [idx-1, idx]
    x0, x1 = knots_x[idx - 1], knots_x[idx]
    s0, s1 = knots_s[idx - 1], knots_s[idx]
    frac = ((v - x0) / (x1 - x0).clamp_min(1e-300)).clamp(0.0, 1.0)
    inside = s0 + frac * (s1 - s0)
    k = min(n - 1, max(3, math.ceil(tail * n)))
    if k >= 1:
        base = r[n - 1 - k]
        theta = float((r[n - k :] - base).mean())
    else:
        theta = 0.0
    theta = max(theta, 1e-6 * max(abs(float(r[-1])), 1.0))
    beyond = surv[-1] * torch.exp(-(v - r[-1]) / theta)
    s = torch.where(v > r[-1], beyond, inside)
    s = torch.where(v < r[0], torch.ones_like(s), s)
    return -torch.log10(s.clamp_min(1e-300)) + 0.0  # + 0.0: no negative zero


def _quantile(values: torch.Tensor, q: float, generator: torch.Generator) -> float:
    """Quantile of a possibly huge 1-D tensor (deterministic subsample past 2M elements)."""
    if values.numel() > _MAX_QUANTILE_ELEMENTS:
        idx = torch.randperm(values.numel(), generator=generator)[:_MAX_QUANTILE_ELEMENTS]
        values = values[idx]
    return float(torch.quantile(values.float(), q))


class Calibrator(nn.Module):
    """Holds every calibrated quantity as a buffer (saved with the guard).

    Args:
        view_names: Names of the views, in the column order of the statistics.
        false_reject_rate: Requested image false-reject rate ``alpha`` on real images.
        pixel_fpr: Requested pixel false-positive rate on real foreground pixels.
        n_bins: Number of Mondrian bins (by foreground fraction); 1 disables conditioning.
        map_radius: Box radius of the combined map's averaging (0: none, as in guards saved
            before format 4.3).
    """

    def __init__(
        self,
        view_names: list[str],
        false_reject_rate: float,
        pixel_fpr: float,
        n_bins: int = 1,
        map_radius: int = 0,
    ) -> None:
        super().__init__()
        self.view_names = list(view_names)
        self.alpha = check_probability(false_reject_rate, "false_reject_rate")
        self.pixel_fpr = check_probability(pixel_fpr, "pixel_fpr")
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"`n_bins` must be a positive int, got {n_bins!r}")
        if isinstance(map_radius, bool) or not isinstance(map_radius, int) or map_radius < 0:
            raise ValueError(f"`map_radius` must be an int >= 0, got {map_radius!r}")
        v = len(view_names)
        self.register_buffer("bin_edges", torch.zeros(n_bins - 1))
        self.register_buffer("ref_stats", torch.zeros(0, v))
        self.register_buffer("ref_bin", torch.zeros(0, dtype=torch.long))
        self.register_buffer("cal_fused", torch.zeros(0))
        self.register_buffer("cal_bin", torch.zeros(0, dtype=torch.long))
        self.register_buffer("cal_group", torch.zeros(0, dtype=torch.long))
        self.register_buffer("active_group", torch.zeros(0, dtype=torch.long))
        self.register_buffer("cal_z", torch.zeros(0, v))
        self.register_buffer("map_scale", torch.ones(v))
        self.register_buffer("tau", torch.ones(()))
        self.register_buffer("map_in_mask", torch.ones(0, dtype=torch.bool))
        self.register_buffer("map_radius", torch.tensor(map_radius, dtype=torch.long))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def legacy_defaults(self) -> set[str]:
        """Buffers holding the value that guards of older formats, which lack them, imply.

        :meth:`_load_from_state_dict` fills these in for older guards; the guard's fingerprint
        leaves them out, so that those guards keep theirs: one preparation group
        (``cal_group``, format 4.0), every group deciding (``active_group``, <= 4.1), every
        map in the mask and no averaging (``map_in_mask``, ``map_radius``, <= 4.2).
        """
        out = set()
        if self.cal_group.unique().numel() <= 1:
            out.add("cal_group")
        if self.active_group.numel() == 0:
            out.add("active_group")
        if self.map_in_mask.numel() == 0:
            out.add("map_in_mask")
        if int(self.map_radius) == 0:
            out.add("map_radius")
        return out

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # Calibration buffers are sized by the calibration data: take the saved shapes.
        names = (
            "bin_edges",
            "ref_stats",
            "ref_bin",
            "cal_fused",
            "cal_bin",
            "cal_group",
            "active_group",
            "cal_z",
            "map_scale",
            "map_in_mask",
        )
        if prefix + "cal_group" not in state_dict and prefix + "cal_bin" in state_dict:
            # format 4.0 guards had no preparation groups: one group
            state_dict[prefix + "cal_group"] = torch.zeros_like(state_dict[prefix + "cal_bin"])
        if prefix + "active_group" not in state_dict and prefix + "cal_bin" in state_dict:
            # format <= 4.1 guards decided with every group
            state_dict[prefix + "active_group"] = torch.zeros(0, dtype=torch.long)
        if prefix + "map_radius" not in state_dict and prefix + "map_scale" in state_dict:
            # format <= 4.2 guards: every map in the mask (empty = all), no averaging
            state_dict[prefix + "map_in_mask"] = torch.ones(0, dtype=torch.bool)
            state_dict[prefix + "map_radius"] = torch.zeros((), dtype=torch.long)
        for name in names:
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def n_bins(self) -> int:
        """Number of Mondrian bins."""
        return len(self.bin_edges) + 1

    def assign_bins(self, condition: torch.Tensor) -> torch.Tensor:
        """``[B]`` conditioning values (foreground fraction) -> ``[B]`` bin indices."""
        return torch.bucketize(condition.float(), self.bin_edges)

    def standardise(self, stats: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        """``[B, V]`` raw statistics -> ``[B, V]`` tail significance in each image's bin.

        ``s_v = -log10 S_v(stat_v)`` against the reference (half A) images of the same bin
        (:func:`tail_significance`).
        """
        out = torch.zeros(stats.shape, dtype=torch.float32)
        for b in range(self.n_bins):
            sel, ref = bins == b, self.ref_bin == b
            if bool(sel.any()):
                for v in range(stats.shape[1]):
                    sig = tail_significance(self.ref_stats[ref, v], stats[sel, v])
                    out[sel, v] = sig.float()
        return out

    def fit_images(
        self,
        stats_a: torch.Tensor,
        stats_b: torch.Tensor,
        cond_a: torch.Tensor,
        cond_b: torch.Tensor,
        groups_b: torch.Tensor | None = None,
    ) -> None:
        """Fit on two halves of real calibration images.

        Args:
            stats_a: ``[nA, V]`` statistics of half A (each view's reference tail).
            stats_b: ``[nB, V]`` statistics of half B (conformal reference).
            cond_a: ``[nA]`` conditioning values (foreground fraction) of half A.
            cond_b: ``[nB]`` conditioning values of half B.
            groups_b: ``[nB]`` integer preparation group of each half-B image (step 3a of the
                module docstring); default one group.

        The number of bins actually used (``n_bins`` after fitting) can be smaller than
        requested when the calibration set is too small for that many bins.

        Raises:
            ValueError: too few images for the requested false-reject rate even in one bin
                (in some group), or ``groups_b`` of the wrong shape or type.
        """
        groups_b = check_groups(groups_b, len(stats_b), "groups_b")
        self.bin_edges = self._feasible_edges(cond_a, cond_b, groups_b)
        k = len(self.bin_edges) + 1
        self.ref_stats, self.ref_bin = stats_a.float().clone(), self.assign_bins(cond_a)
        bins_b = self.assign_bins(cond_b)
        self.cal_bin, self.cal_group = bins_b, groups_b
        self.active_group = torch.zeros(0, dtype=torch.long)
        self.cal_z = self.standardise(stats_b.float(), bins_b)
        self.cal_fused = self.cal_z.max(1).values
        for b in range(k):
            for cell in self._cells(b):
                conformal_threshold(self.cal_fused[cell], self.alpha)  # raises if too few
        self.fitted.fill_(True)

    @property
    def n_groups(self) -> int:
        """Number of preparation groups among the calibration images (1 without groups)."""
        return max(1, len(self.groups))

    @property
    def groups(self) -> list[int]:
        """Preparation groups of the calibration images, ascending."""
        return self.cal_group.unique().tolist()

    @property
    def decision_groups(self) -> list[int]:
        """The groups the decisions use: :meth:`select_groups`'s choice, else all."""
        return self.active_group.tolist() if len(self.active_group) else self.groups

    def select_groups(self, groups: int | list[int] | tuple[int, ...] | None) -> None:
        """Decide with the calibration images of these preparation groups only (step 3a).

        Args:
            groups: One group label, several, or ``None`` for every group (the default; naming
                every group is the same).

        Raises:
            NotFittedError: the calibrator is not fitted.
            TypeError: a label that is not an int.
            ValueError: no label, a repeated one, or one with no calibration images.
        """
        self._require_fitted()
        if groups is None:
            self.active_group = torch.zeros(0, dtype=torch.long)
            return
        labels = [groups] if isinstance(groups, int) else groups
        if not isinstance(labels, (list, tuple)) or isinstance(groups, bool):
            raise TypeError(f"`groups` must be an int, a list of ints or None, got {groups!r}")
        if any(isinstance(g, bool) or not isinstance(g, int) for g in labels):
            raise TypeError(f"`groups` must hold ints, got {list(labels)!r}")
        if not labels or len(set(labels)) != len(labels):
            raise ValueError(f"`groups` must name distinct groups, got {list(labels)!r}")
        unknown = sorted(set(labels) - set(self.groups))
        if unknown:
            raise ValueError(
                f"no calibration images in preparation group(s) {unknown}; "
                f"this guard was calibrated with groups {self.groups}"
            )
        every = sorted(labels) == self.groups  # all of them: the default, same fingerprint
        self.active_group = torch.tensor([] if every else sorted(labels), dtype=torch.long)

    def _cells(self, b: int) -> list[torch.Tensor]:
        """``[nB]`` bool selections of half B: one per decision group present in bin ``b``."""
        in_bin = self.cal_bin == b
        present = self.cal_group[in_bin].unique().tolist()
        if len(self.active_group):  # select_groups chose some: keep those
            chosen = set(self.active_group.tolist())
            present = [g for g in present if g in chosen]
        return [in_bin & (self.cal_group == g) for g in present]

    @staticmethod
    def _edges(cond_a: torch.Tensor, cond_b: torch.Tensor, k: int) -> torch.Tensor:
        qs = torch.linspace(0, 1, k + 1)[1:-1]
        return torch.quantile(torch.cat([cond_a, cond_b]).float(), qs).unique()

    def _feasible_edges(
        self, cond_a: torch.Tensor, cond_b: torch.Tensor, groups_b: torch.Tensor
    ) -> torch.Tensor:
        """Bin edges of the largest bin count ``<= n_bins`` whose bins hold enough images.

        Each bin needs ``ceil(1/alpha) - 1`` images of half B in every preparation group (so a
        rejection is possible) and as many of half A (each view's reference tail). Tied
        foreground fractions can merge quantile edges; those bins are merged too.
        """
        need_b = math.ceil(1 / self.alpha) - 1
        groups = groups_b.unique().tolist()
        for k in range(self.n_bins, 0, -1):
            edges = self._edges(cond_a, cond_b, k)
            if len(edges) != k - 1:
                continue
            counts_a = torch.bincount(torch.bucketize(cond_a.float(), edges), minlength=k)
            bins_b = torch.bucketize(cond_b.float(), edges)
            counts_b = [torch.bincount(bins_b[groups_b == g], minlength=k) for g in groups]
            if int(counts_a.min()) >= need_b and all(int(c.min()) >= need_b for c in counts_b):
                return edges
        return torch.zeros(0)

    def fit_pixels(
        self,
        maps: torch.Tensor,
        foreground: torch.Tensor,
        seed: int = 0,
        in_mask: list[bool] | None = None,
    ) -> None:
        """Fit per-view map scales and ``tau`` on real images.

        Args:
            maps: ``[n, M, H, W]`` per-view maps of real calibration images.
            foreground: ``[n, 1, H, W]`` bool foreground.
            seed: Seed of the subsample used for huge quantiles.
            in_mask: ``M`` flags: which maps enter the combined map (default all; at least
                one).

        Raises:
            ValueError: ``in_mask`` of the wrong length or without a true flag.
        """
        m = maps.shape[1]
        flags = [True] * m if in_mask is None else [bool(f) for f in in_mask]
        if len(flags) != m or not any(flags):
            raise ValueError(
                f"`in_mask` must flag {m} maps with at least one True, got {in_mask!r}"
            )
        g = torch.Generator().manual_seed(seed)
        fg = foreground.expand_as(maps)
        scales = [max(_quantile(maps[:, v][fg[:, v]], 0.99, g), 1e-6) for v in range(m)]
        self.map_scale = torch.tensor(scales)
        # every map in the mask is stored as "empty" (the value of guards saved before it)
        self.map_in_mask = torch.tensor([] if all(flags) else flags, dtype=torch.bool)
        combined = self.combine_maps(maps, raw=True)
        self.tau = torch.tensor(max(_quantile(combined[foreground], 1.0 - self.pixel_fpr, g), 1e-6))

    def combine_maps(self, maps: torch.Tensor, raw: bool = False) -> torch.Tensor:
        """``[B, M, H, W]`` maps -> ``[B, 1, H, W]`` combined map (``c / (c + tau)`` unless raw)."""
        scaled = maps / self.map_scale[None, :, None, None]
        if len(self.map_in_mask):
            scaled = scaled[:, self.map_in_mask]
        c = max_average(scaled, int(self.map_radius))
        return c if raw else c / (c + self.tau)

    def _cal_fused(self, columns: list[int] | None) -> torch.Tensor:
        return self.cal_fused if columns is None else self.cal_z[:, columns].max(1).values

    def thresholds(self, columns: list[int] | None = None) -> torch.Tensor:
        """``[n_bins]`` fused-statistic thresholds ``t*`` (``unsafe`` iff ``T > t*`` of its bin).

        With preparation groups, ``t*`` of a bin is the largest of its groups' thresholds.

        Args:
            columns: Fuse only these views (indices); default all.
        """
        self._require_fitted()
        cal_fused = self._cal_fused(columns)
        return torch.tensor(
            [
                max(conformal_threshold(cal_fused[cell], self.alpha) for cell in self._cells(b))
                for b in range(self.n_bins)
            ]
        )

    def decide(
        self, stats: torch.Tensor, condition: torch.Tensor, columns: list[int] | None = None
    ) -> dict[str, torch.Tensor]:
        """Turn raw view statistics ``[B, V]`` into calibrated decisions.

        With ``columns`` the decision uses only those views, exactly as a guard fitted with
        just them would (each view's reference tail and the calibration half B are the
        same): the leave-one-family-out protocol compares view sets this way without refitting.

        Args:
            stats: ``[B, V]`` raw view statistics (all views, in column order).
            condition: ``[B]`` conditioning values (foreground fraction).
            columns: Fuse only these views (indices); default all. ``z``, ``fired`` and
                ``view_p`` then have ``len(columns)`` columns.

        Returns:
            dict with ``z`` ``[B, V]`` (per-view tail significance), ``fused`` ``[B]``,
            ``p_value`` ``[B]`` (float64), ``severity`` ``[B]`` (float64, step 3b of the
            module docstring), ``unsafe`` ``[B]`` bool, ``fired`` ``[B, V]`` bool, ``view_p``
            ``[B, V]`` and ``bin`` ``[B]``.
        """
        self._require_fitted()
        bins = self.assign_bins(condition)
        return self.decide_significance(self.standardise(stats.float(), bins), bins, columns)

    def severity(
        self, fused: torch.Tensor, bins: torch.Tensor, columns: list[int] | None = None
    ) -> torch.Tensor:
        """``[B]`` float64 severity (step 3b) of fused statistics ``[B]`` in their bins.

        Args:
            fused: ``[B]`` fused statistics (max tail significance over ``columns``).
            bins: ``[B]`` bin indices.
            columns: The views that were fused (default all).
        """
        cal_fused = self._cal_fused(columns)
        out = torch.zeros(len(fused), dtype=torch.float64)
        for b in range(self.n_bins):
            sel = bins == b
            if bool(sel.any()):
                shifted = []
                for cell in self._cells(b):
                    ref = cal_fused[cell]
                    t_cell = torch.tensor([conformal_threshold(ref, self.alpha)])
                    at_threshold = tail_significance(ref, t_cell)
                    shifted.append(tail_significance(ref, fused[sel]) - at_threshold)
                out[sel] = torch.stack(shifted).min(0).values - math.log10(self.alpha)
        return out

    def decide_significance(
        self, z: torch.Tensor, bins: torch.Tensor, columns: list[int] | None = None
    ) -> dict[str, torch.Tensor]:
        """:meth:`decide` from per-view tail significance ``z`` ``[B, V]`` already computed.

        ``z = standardise(stats, bins)`` with ``bins = assign_bins(condition)``; analyses
        that compare many view subsets compute it once and call this per subset.
        """
        self._require_fitted()
        cal_z = self.cal_z
        if columns is not None:
            z, cal_z = z[:, columns], cal_z[:, columns]
        cal_fused = self._cal_fused(columns)
        fused = z.max(1).values
        p = torch.ones(len(fused), dtype=torch.float64)
        severity = self.severity(fused, bins, columns)
        view_p = torch.ones(z.shape, dtype=torch.float64)
        for b in range(self.n_bins):
            sel = bins == b
            if bool(sel.any()):
                p[sel] = 0.0
                view_p[sel] = 0.0
                for ref in self._cells(b):  # step 3a: the largest p-value over the groups
                    p[sel] = torch.maximum(p[sel], conformal_p_values(cal_fused[ref], fused[sel]))
                    for v in range(z.shape[1]):
                        pv = conformal_p_values(cal_z[ref, v], z[sel, v])
                        view_p[sel, v] = torch.maximum(view_p[sel, v], pv)
        t = self.thresholds(columns)[bins]
        return {
            "z": z,
            "fused": fused,
            "p_value": p,
            "severity": severity,
            "unsafe": fused > t,
            "fired": z > t[:, None],
            "view_p": view_p,
            "bin": bins,
        }

    def _require_fitted(self) -> None:
        if not bool(self.fitted):
            raise NotFittedError("the calibrator is not fitted; call Guard.fit first")
