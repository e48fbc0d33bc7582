"""Flag / resample / drop: the guard's sampling policy over any sampler (no diffusers needed).

A *sampler* is any callable that returns a batch of images ``[B, C, H, W]`` in ``[0, 1]``
(a ``[B, H, W, C]`` / ``[B, H, W]`` array or a list of PIL images is accepted too). The
policy judges each round in one vectorised ``guard.evaluate`` call and never alters an image.
Thin wrappers put it behind each ecosystem's own call:

- :func:`guarded_sample`: a plain PyTorch loop, ``sampler(n) -> [n, C, H, W]``;
- :func:`inferer_sampler`: a MONAI generative ``DiffusionInferer`` as such a sampler;
- :class:`~safegen_guard.integrations.diffusers.SafeGenFilter`: diffusers pipelines.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from safegen_guard.adaptive import BatchCheck, add_batch_test
from safegen_guard.integrations.audit import AuditLog
from safegen_guard.validation import check_choice, check_positive_int
from safegen_guard.verdict import Verdict

__all__ = [
    "POLICIES",
    "RejectedImages",
    "SamplingPolicy",
    "SamplingResult",
    "guarded_sample",
    "images_to_tensor",
    "inferer_sampler",
]

log = logging.getLogger(__name__)

POLICIES: tuple[str, ...] = ("flag", "resample", "drop")

Images = Any  # torch.Tensor [B, C, H, W] | np.ndarray [B, H, W, C] | list[PIL.Image.Image]
SampleFn = Callable[[int | None], Images]
"""``sample_fn(None)`` draws the requested batch; ``sample_fn(k)`` draws ``k`` more images."""


@dataclass
class RejectedImages:
    """Images the policy refused to return as safe, kept with their verdicts.

    Attributes:
        images: ``N`` images: a ``[N, C, H, W]`` tensor in ``[0, 1]`` from
            :class:`SamplingPolicy`; wrappers may convert it (e.g. to PIL).
        verdict: the :class:`Verdict` of the ``N`` images (all ``unsafe``).
        rounds: ``[N]`` long, the sampling round (0-based) that produced each image.
    """

    images: Images
    verdict: Verdict
    rounds: torch.Tensor

    def __len__(self) -> int:
        return len(self.verdict)


@dataclass
class SamplingResult:
    """What one run of the policy produced.

    Attributes:
        images: ``[N, C, H, W]`` float in ``[0, 1]``: every image for ``"flag"``, only safe
            ones for ``"resample"`` and ``"drop"``.
        verdict: the :class:`Verdict` of the ``N`` returned images.
        rejected: the images withheld (``"resample"``, ``"drop"``) with their verdicts.
        attempts: total images sampled over all rounds.
        rounds: sampling rounds run.
        num_requested: images asked for (the first round's batch).
        budget_exhausted: ``"resample"`` stopped at ``max_rounds`` with fewer safe images
            than requested.
    """

    images: torch.Tensor
    verdict: Verdict
    rejected: RejectedImages
    attempts: int
    rounds: int
    num_requested: int
    budget_exhausted: bool

    @property
    def num_safe(self) -> int:
        """Safe images among the returned ones."""
        return int(self.verdict.safe.sum())


class SamplingPolicy:
    """Judge every sampled image with a guard and apply ``"flag"``, ``"resample"`` or ``"drop"``.

    Args:
        guard: a fitted :class:`~safegen_guard.Guard`, or any object with
            ``evaluate(x, explain=...) -> Verdict`` (and ``fingerprint`` for the audit log;
            ``config.image_size`` / ``config.channels``, when present, are checked).
        policy: ``"flag"`` returns every image with its verdict (except copies of training
            images, which no policy returns: see ``Verdict.memorized``); ``"resample"`` replaces
            rejected images by new samples until the requested number are safe or
            ``max_rounds`` rounds ran; ``"drop"`` samples once and returns the safe ones.
        max_rounds: sampling rounds allowed by ``"resample"`` (the first included).
        explain: forwarded to ``guard.evaluate`` (needs an attached explainer).
        audit_log: path of an append-only JSONL audit log (one line per sampled image).
        source: the ``source`` written in the audit log (who produced the images).
        batch_check: also run the batch realism test
            (:func:`~safegen_guard.adaptive.add_batch_test`) on every round at the guard's
            level: samples that a classifier trained on the round itself tells from real
            scans become unsafe (reason ``"batch_realism"``). It catches samples that pass
            every per-image check and are still recognisably fake as a group; it needs
            rounds of a few dozen images and costs one small training per round.

    Raises:
        TypeError: ``guard`` has no ``evaluate`` method, ``explain`` is not a bool/tuple, or
            ``batch_check`` is not a :class:`~safegen_guard.adaptive.BatchCheck`.
        ValueError: unknown ``policy``, ``max_rounds < 1``, or ``explain`` requested from a
            guard without an explainer.

    Example:
        >>> policy = SamplingPolicy(guard, "resample")  # doctest: +SKIP
        >>> result = policy.run(lambda n: generator.sample(n or 8))  # doctest: +SKIP
        >>> result.images.shape, result.attempts, result.rejected.verdict  # doctest: +SKIP
    """

    def __init__(
        self,
        guard: Any,
        policy: str = "flag",
        *,
        max_rounds: int = 4,
        explain: bool | tuple[str, ...] = False,
        audit_log: str | os.PathLike | None = None,
        source: str = "sampler",
        batch_check: BatchCheck | None = None,
    ) -> None:
        self.check_inputs(guard, policy, max_rounds, explain, audit_log, batch_check)
        self.batch_check = batch_check
        self.guard = guard
        self.policy = policy
        self.max_rounds = max_rounds
        self.explain = explain
        self.source = source
        self.audit = AuditLog(audit_log, guard.fingerprint) if audit_log is not None else None

    @staticmethod
    def check_inputs(
        guard: Any,
        policy: str,
        max_rounds: int,
        explain: bool | tuple[str, ...],
        audit_log: str | os.PathLike | None,
        batch_check: BatchCheck | None = None,
    ) -> None:
        """Validate the constructor arguments (one ``raise`` per rule)."""
        if not callable(getattr(guard, "evaluate", None)):
            raise TypeError(f"`guard` must have an `evaluate` method, got {type(guard).__name__}")
        check_choice(policy, "policy", POLICIES)
        check_positive_int(max_rounds, "max_rounds")
        if not isinstance(explain, (bool, tuple)):
            raise TypeError(f"`explain` must be a bool or a tuple of names, got {explain!r}")
        if explain and getattr(guard, "explainer", None) is None:
            raise ValueError(
                f"`explain={explain!r}` needs a guard with an attached explainer, got a guard "
                "without one (see safegen_guard.explain)"
            )
        if audit_log is not None and not isinstance(audit_log, (str, os.PathLike)):
            raise TypeError(f"`audit_log` must be a path or None, got {type(audit_log).__name__}")
        if batch_check is not None and not isinstance(batch_check, BatchCheck):
            raise TypeError(
                f"`batch_check` must be a BatchCheck or None, got {type(batch_check).__name__}"
            )

    def run(self, sample_fn: SampleFn) -> SamplingResult:
        """Sample, judge and keep or withhold images until the policy is satisfied.

        Args:
            sample_fn: ``sample_fn(None)`` draws the requested batch; ``sample_fn(k)`` draws
                ``k`` more images (``"resample"`` only).

        Returns:
            A :class:`SamplingResult` with ``[N, C, H, W]`` tensors on the CPU.
        """
        # 1. First round: the batch the caller asked for, judged in one call.
        x, verdict = self._sample_round(sample_fn, None, 0)
        num_requested, rounds, attempts = len(verdict), 1, len(verdict)
        first = torch.zeros(len(verdict), dtype=torch.long)
        keep = self._returnable(verdict)
        kept, rejected = _Pool(), _Pool()
        kept.add(x[keep], verdict.select(keep), first[keep])
        rejected.add(x[~keep], verdict.select(~keep), first[~keep])
        # 2. Resample: draw only as many as are still missing, until done or out of budget.
        while self.policy == "resample" and len(kept) < num_requested and rounds < self.max_rounds:
            x, verdict = self._sample_round(sample_fn, num_requested - len(kept), rounds)
            attempts, safe = attempts + len(verdict), self._returnable(verdict)
            idx = safe.nonzero().flatten()[: num_requested - len(kept)]
            r = torch.full((len(verdict),), rounds, dtype=torch.long)
            kept.add(x[idx], verdict.select(idx), r[idx])
            rejected.add(x[~safe], verdict.select(~safe), r[~safe])
            rounds += 1
        # 3. Report the budget and package.
        exhausted = self.policy == "resample" and len(kept) < num_requested
        if exhausted:
            log.warning(
                "sampling policy: only %d of %d images passed the guard after %d rounds "
                "(%d sampled); the rejected ones are in `rejected`",
                len(kept),
                num_requested,
                rounds,
                attempts,
            )
        images, verdict, _ = kept.cat()
        rx, rv, rr = rejected.cat()
        return SamplingResult(
            images=images,
            verdict=verdict,
            rejected=RejectedImages(rx, rv, rr),
            attempts=attempts,
            rounds=rounds,
            num_requested=num_requested,
            budget_exhausted=exhausted,
        )

    def _returnable(self, verdict: Verdict) -> torch.Tensor:
        """``[B]`` bool, the images this policy may return.

        Never a memorized one (a copy of a training image), whatever the policy and the
        index's ``mark_unsafe``.
        """
        ok = torch.ones_like(verdict.unsafe) if self.policy == "flag" else verdict.safe
        return ok & ~verdict.memorized

    def _sample_round(
        self, sample_fn: SampleFn, n: int | None, round_idx: int
    ) -> tuple[torch.Tensor, Verdict]:
        """Draw one round, check it fits the guard, judge it in one call, audit it."""
        x = images_to_tensor(sample_fn(n))
        self._check_image_shape(x)
        verdict = self.guard.evaluate(x, explain=self.explain)
        if self.batch_check is not None:
            verdict, _ = add_batch_test(
                verdict, x, self.batch_check, verdict.threshold, round_index=round_idx
            )
        if self.audit is not None:
            kept = self._returnable(verdict)
            extra = [{"attempt": round_idx, "policy": self.policy, "kept": bool(k)} for k in kept]
            self.audit.write(verdict, x, step=round_idx, source=self.source, extra=extra)
        return x, verdict

    def _check_image_shape(self, x: torch.Tensor) -> None:
        cfg = getattr(self.guard, "config", None)
        if cfg is None:
            return
        expected = (cfg.channels, cfg.image_size, cfg.image_size)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"the sampler produced images [C, H, W] = {list(x.shape[1:])} but the guard "
                f"was fitted on [C, H, W] = {list(expected)}; sample at the guard's size or "
                "fit a guard for the sampler's size"
            )


class _Pool:
    """Images + verdicts + round indices accumulated over rounds (template kept when empty)."""

    def __init__(self) -> None:
        self.parts: list[tuple[torch.Tensor, Verdict, torch.Tensor]] = []

    def add(self, x: torch.Tensor, verdict: Verdict, rounds: torch.Tensor) -> None:
        self.parts.append((x, verdict, rounds))

    def __len__(self) -> int:
        return sum(len(v) for _, v, _ in self.parts)

    def cat(self) -> tuple[torch.Tensor, Verdict, torch.Tensor]:
        x, v, r = zip(*self.parts)
        return torch.cat(x), Verdict.cat(v), torch.cat(r)


def guarded_sample(
    guard: Any,
    sampler: Callable[[int], Images],
    num_images: int,
    policy: str = "resample",
    *,
    max_rounds: int = 4,
    explain: bool | tuple[str, ...] = False,
    audit_log: str | os.PathLike | None = None,
    batch_check: BatchCheck | None = None,
) -> SamplingResult:
    """Run the policy over a plain PyTorch sampler.

    Args:
        guard: a fitted guard (see :class:`SamplingPolicy`).
        sampler: ``sampler(n)`` returns ``n`` images ``[n, C, H, W]`` in ``[0, 1]``; it is
            called once for the requested batch and once per resampling round.
        num_images: images wanted (safe ones for ``"resample"``).
        policy: ``"flag"``, ``"resample"`` or ``"drop"``.
        max_rounds: sampling rounds allowed by ``"resample"``.
        explain: forwarded to ``guard.evaluate``.
        audit_log: JSONL audit log path.
        batch_check: also run the batch realism test on every round (see
            :class:`SamplingPolicy`).

    Returns:
        A :class:`SamplingResult`.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sampler = lambda n: model.decode(torch.randn(n, 64, generator=g))  # doctest: +SKIP
        >>> result = guarded_sample(guard, sampler, 16)  # doctest: +SKIP
    """
    check_positive_int(num_images, "num_images")
    if not callable(sampler):
        raise TypeError(f"`sampler` must be a callable, got {type(sampler).__name__}")
    runner = SamplingPolicy(
        guard,
        policy,
        max_rounds=max_rounds,
        explain=explain,
        audit_log=audit_log,
        batch_check=batch_check,
    )
    return runner.run(lambda n: sampler(num_images if n is None else n))


def inferer_sampler(
    inferer: Any,
    model: torch.nn.Module,
    scheduler: Any,
    image_shape: tuple[int, int, int],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    to_unit_range: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Callable[[int], torch.Tensor]:
    """A MONAI generative inferer (``DiffusionInferer``) as a sampler for :func:`guarded_sample`.

    Args:
        inferer: an object with ``sample(input_noise, diffusion_model, scheduler, verbose)``,
            e.g. ``monai.inferers.DiffusionInferer``.
        model: the diffusion model.
        scheduler: the MONAI scheduler (its timesteps already set).
        image_shape: ``(C, H, W)`` of one image.
        generator: draws the starting noise and seeds the scheduler's step noise
            (reproducible rounds; default: a fresh seed from the global RNG).
        device: where the noise and sampling live; images come back on the CPU.
        to_unit_range: maps the model's output to ``[0, 1]`` (e.g. ``lambda x: (x + 1) / 2``
            for a model trained on ``[-1, 1]``); default: the output as is.

    Returns:
        ``sampler(n) -> [n, C, H, W]``.
    """
    if not callable(getattr(inferer, "sample", None)):
        raise TypeError(f"`inferer` must have a `sample` method, got {type(inferer).__name__}")
    if len(image_shape) != 3:
        raise ValueError(f"`image_shape` must be (C, H, W), got {tuple(image_shape)}")

    on_cpu = torch.device(device).type == "cpu"

    @torch.no_grad()
    def sampler(n: int) -> torch.Tensor:
        noise = torch.randn((n, *image_shape), generator=generator).to(device)
        # MONAI schedulers draw their step noise from the global RNG: seed it from
        # `generator` inside a forked RNG, so rounds are reproducible and the caller's
        # global state is left as it was
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[] if on_cpu else None):
            torch.manual_seed(seed)
            x = inferer.sample(
                input_noise=noise, diffusion_model=model, scheduler=scheduler, verbose=False
            )
        x = to_unit_range(x) if to_unit_range is not None else x
        return x.detach().cpu()

    return sampler


def images_to_tensor(images: Images) -> torch.Tensor:
    """Normalise sampled images to a float ``[B, C, H, W]`` tensor (a new tensor, on CPU).

    Args:
        images: ``[B, C, H, W]`` tensor, ``[B, H, W, C]`` / ``[B, H, W]`` array in ``[0, 1]``,
            or a list of PIL images (8-bit, divided by 255).

    Raises:
        TypeError: any other type.
    """
    if isinstance(images, torch.Tensor):
        return images.detach().to("cpu", torch.float32).clone()
    if isinstance(images, list) and images and hasattr(images[0], "convert"):
        images = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in images])
    if isinstance(images, np.ndarray):
        arr = images[..., None] if images.ndim == 3 else images
        return torch.from_numpy(np.array(arr, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()
    raise TypeError(
        "the sampler must return images as a torch.Tensor, a numpy array or a list of PIL "
        f"images, got {type(images).__name__}"
    )
