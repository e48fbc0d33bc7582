"""`SafeGenFilter`: a post-sampling guard around any diffusers image pipeline.

Unlike the Stable Diffusion safety checker, the filter never blackens or mutates an image,
returns every score, p-value and map it computed, takes its thresholds from the calibrated
guard, works with any pipeline that returns images, and judges each sampling round in one
vectorised ``guard.evaluate`` call.

The pipeline subclass that stores the guard with the pipeline (``save_pretrained`` /
``from_pretrained``) is ``SafeGenDDPMPipeline`` in :mod:`.diffusers_component`.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.utils import BaseOutput, numpy_to_pil

from safegen_guard.integrations.audit import AuditLog
from safegen_guard.validation import check_choice, check_positive_int
from safegen_guard.verdict import Verdict

__all__ = ["POLICIES", "OUTPUT_TYPES", "RejectedImages", "SafeGenFilter", "SafeGenFilterOutput"]

log = logging.getLogger(__name__)

POLICIES: tuple[str, ...] = ("flag", "resample", "drop")
OUTPUT_TYPES: tuple[str, ...] = ("pt", "np", "pil")
_SIZE_ARGS: tuple[str, ...] = ("batch_size", "num_images_per_prompt")

Images = Any  # torch.Tensor [B, C, H, W] | np.ndarray [B, H, W, C] | list[PIL.Image.Image]


@dataclass
class RejectedImages:
    """Images the filter refused to return as safe, kept with their verdicts.

    Attributes:
        images: ``N`` images in the requested ``output_type`` (``[N, C, H, W]`` tensor,
            ``[N, H, W, C]`` array or list of PIL images), values in ``[0, 1]``.
        verdict: the :class:`Verdict` of the ``N`` images (all ``unsafe``).
        rounds: ``[N]`` long, the sampling round (0-based) that produced each image.
    """

    images: Images
    verdict: Verdict
    rounds: torch.Tensor

    def __len__(self) -> int:
        return len(self.verdict)


@dataclass
class SafeGenFilterOutput(BaseOutput):
    """Result of a guarded pipeline call.

    Attributes:
        images: the ``N`` returned images in the requested ``output_type``: every image for
            ``policy="flag"``, only safe ones for ``"resample"`` and ``"drop"``.
        scores: ``[N]`` float, ``-log10(p_value)`` (higher = more anomalous).
        p_values: ``[N]`` float in ``(0, 1]``, calibrated on real images.
        unsafe: ``[N]`` bool (all ``False`` unless ``policy="flag"``).
        verdict: the full :class:`Verdict` of the returned images.
        rejected: the images withheld (``"resample"``, ``"drop"``) with their verdicts.
        attempts: total images sampled over all rounds.
        rounds: sampling rounds run.
        num_requested: images asked for (the pipeline's first-round batch).
        num_safe: safe images returned (``"flag"``: safe images among the returned ones).
        budget_exhausted: ``"resample"`` stopped at ``max_rounds`` with fewer safe images
            than requested (``num_safe < num_requested``).
        heatmaps: ``[N, 1, H, W]`` in ``[0, 1]`` when ``explain`` was requested, else ``None``.
        masks: ``[N, 1, H, W]`` bool anomalous pixels when ``return_masks``, else ``None``.
    """

    images: Images
    scores: torch.Tensor
    p_values: torch.Tensor
    unsafe: torch.Tensor
    verdict: Verdict
    rejected: RejectedImages
    attempts: int
    rounds: int
    num_requested: int
    num_safe: int
    budget_exhausted: bool
    heatmaps: torch.Tensor | None = None
    masks: torch.Tensor | None = None


class SafeGenFilter:
    """Score every sampled image with a :class:`~safegen_guard.Guard` and apply a policy.

    Args:
        guard: a fitted guard, or any object with ``evaluate(x, explain=...) -> Verdict``,
            ``fingerprint`` and ``config.image_size`` / ``config.channels``.
        policy: ``"flag"`` returns every image with its verdict; ``"resample"`` replaces
            rejected images by new samples until the requested number are safe or
            ``max_rounds`` rounds ran; ``"drop"`` samples once and returns the safe ones.
        max_rounds: sampling rounds allowed by ``"resample"`` (the first included).
        explain: forwarded to ``guard.evaluate`` (``True`` or a tuple of method names gives
            ``heatmaps``; needs an attached explainer).
        return_masks: also return the ``[N, 1, H, W]`` bool anomaly masks.
        audit_log: path of an append-only JSONL audit log (one line per sampled image).

    Raises:
        TypeError: ``guard`` has no ``evaluate`` method, or ``explain`` is not a bool/tuple.
        ValueError: unknown ``policy``, ``max_rounds < 1``, or ``explain`` requested from a
            guard without an explainer.

    Example:
        >>> guarded = SafeGenFilter(guard, policy="resample").wrap(pipe)  # doctest: +SKIP
        >>> g = torch.Generator().manual_seed(0)
        >>> out = guarded(batch_size=8, generator=g)  # doctest: +SKIP
        >>> out.images, out.scores, out.attempts, out.rejected.verdict  # doctest: +SKIP
    """

    def __init__(
        self,
        guard: Any,
        policy: str = "flag",
        *,
        max_rounds: int = 4,
        explain: bool | tuple[str, ...] = False,
        return_masks: bool = False,
        audit_log: str | os.PathLike | None = None,
    ) -> None:
        self.check_inputs(guard, policy, max_rounds, explain, return_masks, audit_log)
        self.guard = guard
        self.policy = policy
        self.max_rounds = max_rounds
        self.explain = explain
        self.return_masks = return_masks
        self.audit = AuditLog(audit_log, guard.fingerprint) if audit_log is not None else None

    @staticmethod
    def check_inputs(
        guard: Any,
        policy: str,
        max_rounds: int,
        explain: bool | tuple[str, ...],
        return_masks: bool,
        audit_log: str | os.PathLike | None,
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
        if not isinstance(return_masks, bool):
            raise TypeError(f"`return_masks` must be a bool, got {return_masks!r}")
        if audit_log is not None and not isinstance(audit_log, (str, os.PathLike)):
            raise TypeError(f"`audit_log` must be a path or None, got {type(audit_log).__name__}")

    def wrap(self, pipe: Callable[..., Any]) -> GuardedPipeline:
        """Return a callable with ``pipe``'s own call signature that filters its images.

        Args:
            pipe: any diffusers pipeline (or callable) returning images, e.g.
                ``DDPMPipeline`` or ``DDIMPipeline``.
        """
        return GuardedPipeline(self, pipe)

    def sample(
        self,
        sample_fn: Callable[[int | None], Images],
        *,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> SafeGenFilterOutput | tuple[Images, Verdict]:
        """Run the policy over a sampler; the engine behind :meth:`wrap` and the pipeline.

        Args:
            sample_fn: ``sample_fn(None)`` draws the requested batch; ``sample_fn(k)`` draws
                ``k`` more images (``"resample"``). Returns a ``[B, C, H, W]`` tensor in
                ``[0, 1]``, a ``[B, H, W, C]`` array, or a list of PIL images.
            output_type: ``"pt"``, ``"np"`` or ``"pil"`` for the returned images.
            return_dict: return a :class:`SafeGenFilterOutput`, else ``(images, verdict)``.
        """
        check_choice(output_type, "output_type", OUTPUT_TYPES)
        # 1. First round: the batch the caller asked for, judged in one call.
        x, verdict = self._sample_round(sample_fn, None, 0)
        num_requested, rounds = len(verdict), 1
        rounds_idx = torch.zeros(len(verdict), dtype=torch.long)
        if self.policy == "flag":
            keep = torch.ones(len(verdict), dtype=torch.bool)
        else:
            keep = verdict.safe
        kept, rejected = _Pool(), _Pool()
        kept.add(x[keep], verdict.select(keep), rounds_idx[keep])
        rejected.add(x[~keep], verdict.select(~keep), rounds_idx[~keep])
        attempts = len(verdict)
        # 2. Resample: draw only as many as are still missing, until done or out of budget.
        while self.policy == "resample" and len(kept) < num_requested and rounds < self.max_rounds:
            x, verdict = self._sample_round(sample_fn, num_requested - len(kept), rounds)
            attempts, safe = attempts + len(verdict), verdict.safe
            idx = safe.nonzero().flatten()[: num_requested - len(kept)]
            r = torch.full((len(verdict),), rounds, dtype=torch.long)
            kept.add(x[idx], verdict.select(idx), r[idx])
            rejected.add(x[~safe], verdict.select(~safe), r[~safe])
            rounds += 1
        # 3. Package: convert to the requested output type, report the budget.
        exhausted = self.policy == "resample" and len(kept) < num_requested
        if exhausted:
            log.warning(
                "SafeGenFilter: only %d of %d images passed the guard after %d rounds "
                "(%d sampled); the rejected ones are in `output.rejected`",
                len(kept),
                num_requested,
                rounds,
                attempts,
            )
        out = self._package(kept, rejected, output_type, attempts, rounds, num_requested)
        out.budget_exhausted = exhausted
        return out if return_dict else (out.images, out.verdict)

    # ---------------------------------------------------------------- helpers
    def _sample_round(
        self, sample_fn: Callable[[int | None], Images], n: int | None, round_idx: int
    ) -> tuple[torch.Tensor, Verdict]:
        """Draw one round, check it fits the guard, judge it in one call, audit it."""
        x = images_to_tensor(sample_fn(n))
        self._check_image_shape(x)
        verdict = self.guard.evaluate(x, explain=self.explain)
        if self.audit is not None:
            kept = verdict.safe if self.policy != "flag" else torch.ones(len(x), dtype=torch.bool)
            extra = [{"attempt": round_idx, "policy": self.policy, "kept": bool(k)} for k in kept]
            self.audit.write(verdict, x, step=round_idx, source="diffusers", extra=extra)
        return x, verdict

    def _check_image_shape(self, x: torch.Tensor) -> None:
        cfg = getattr(self.guard, "config", None)
        if cfg is None:
            return
        expected = (cfg.channels, cfg.image_size, cfg.image_size)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"the pipeline produced images [C, H, W] = {list(x.shape[1:])} but the guard "
                f"was fitted on [C, H, W] = {list(expected)}; sample at the guard's size or "
                "fit a guard for the pipeline's size"
            )

    def _package(
        self,
        kept: _Pool,
        rejected: _Pool,
        output_type: str,
        attempts: int,
        rounds: int,
        num_requested: int,
    ) -> SafeGenFilterOutput:
        x, v, _ = kept.cat()
        rx, rv, rr = rejected.cat()
        return SafeGenFilterOutput(
            images=tensor_to_output(x, output_type),
            scores=v.score,
            p_values=v.p_value,
            unsafe=v.unsafe,
            verdict=v,
            rejected=RejectedImages(tensor_to_output(rx, output_type), rv, rr),
            attempts=attempts,
            rounds=rounds,
            num_requested=num_requested,
            num_safe=int(v.safe.sum()),
            budget_exhausted=False,
            heatmaps=v.heatmap if self.explain else None,
            masks=v.mask if self.return_masks else None,
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


class GuardedPipeline:
    """A pipeline behind a :class:`SafeGenFilter`, called exactly like the pipeline.

    ``output_type`` and ``return_dict`` keep their meaning; the pipeline itself is always
    asked for ``output_type="pt"``. For ``"resample"`` the pipeline needs a ``batch_size``
    (or ``num_images_per_prompt``) argument and a single ``torch.Generator`` (or none).

    Args:
        safety_filter: the filter and its policy.
        pipe: the pipeline (any callable returning images).
    """

    def __init__(self, safety_filter: SafeGenFilter, pipe: Callable[..., Any]) -> None:
        if not callable(pipe):
            raise TypeError(f"`pipe` must be a callable pipeline, got {type(pipe).__name__}")
        self.filter = safety_filter
        self.pipe = pipe
        self.__signature__ = inspect.signature(pipe)
        self.__doc__ = getattr(pipe, "__doc__", None) or getattr(pipe.__call__, "__doc__", None)
        names = self.__signature__.parameters
        self._size_arg = next((a for a in _SIZE_ARGS if a in names), None)
        if safety_filter.policy == "resample" and self._size_arg is None:
            raise ValueError(
                f"policy 'resample' needs a pipeline with one of {list(_SIZE_ARGS)} among its "
                f"arguments, got a pipeline taking {list(names)}"
            )

    def __call__(self, *args: Any, **kwargs: Any) -> SafeGenFilterOutput | tuple[Images, Verdict]:
        """Call the pipeline with its own arguments and filter the images it returns."""
        names = self.__signature__.parameters
        ours = {
            k: kwargs.pop(k)
            for k in ("output_type", "return_dict")
            if k not in names and k in kwargs
        }
        call = _bind(self.__signature__, args, kwargs)
        output_type = ours.get("output_type", call.pop("output_type", "pil")) or "pil"
        return_dict = ours.get("return_dict", call.pop("return_dict", True))
        if self.filter.policy == "resample" and isinstance(call.get("generator"), list):
            raise ValueError(
                "policy 'resample' needs one torch.Generator (or None), got a list of "
                f"{len(call['generator'])} generators"
            )
        return self.filter.sample(
            lambda n: self._draw(call, n), output_type=output_type, return_dict=return_dict
        )

    def _draw(self, call: dict[str, Any], n: int | None) -> Images:
        """Call the pipeline once (``n`` images if given) and return its images."""
        kwargs = dict(call)
        if n is not None:
            kwargs[self._size_arg] = n
        names = self.__signature__.parameters
        if "output_type" in names:
            kwargs["output_type"] = "pt"
        if "return_dict" in names:
            kwargs["return_dict"] = True
        result = self.pipe(**kwargs)
        return result.images if hasattr(result, "images") else result[0]


def _bind(sig: inspect.Signature, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Bind a call to ``sig`` with defaults, as keyword arguments (``**kwargs`` flattened)."""
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    call: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            call.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                raise TypeError("a guarded pipeline takes no extra positional arguments")
        else:
            call[name] = value
    return call


def images_to_tensor(images: Images) -> torch.Tensor:
    """Normalise pipeline images to a float ``[B, C, H, W]`` tensor (a new tensor, on CPU).

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
        "the pipeline must return images as a torch.Tensor, a numpy array or a list of PIL "
        f"images, got {type(images).__name__}"
    )


def tensor_to_output(x: torch.Tensor, output_type: str) -> Images:
    """Convert ``[B, C, H, W]`` in ``[0, 1]`` to ``"pt"`` (as is), ``"np"`` or ``"pil"``."""
    if output_type == "pt":
        return x
    arr = x.permute(0, 2, 3, 1).numpy()
    return arr if output_type == "np" else numpy_to_pil(arr)


def __getattr__(name: str) -> Any:
    if name in ("SafeGenDDPMPipeline", "SafeGenGuardComponent"):
        from safegen_guard.integrations import diffusers_component

        return getattr(diffusers_component, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
