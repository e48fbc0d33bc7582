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
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from diffusers.utils import BaseOutput, numpy_to_pil

from safegen_guard.adaptive import BatchCheck
from safegen_guard.sampling import (
    POLICIES,
    Images,
    RejectedImages,
    SamplingPolicy,
    SamplingResult,
    images_to_tensor,
)
from safegen_guard.validation import check_choice
from safegen_guard.verdict import Verdict

__all__ = [
    "POLICIES",
    "OUTPUT_TYPES",
    "RejectedImages",
    "SafeGenFilter",
    "SafeGenFilterOutput",
    "images_to_tensor",
]

OUTPUT_TYPES: tuple[str, ...] = ("pt", "np", "pil")
_SIZE_ARGS: tuple[str, ...] = ("batch_size", "num_images_per_prompt")


@dataclass
class SafeGenFilterOutput(BaseOutput):
    """Result of a guarded pipeline call.

    Besides the fields below, every per-image field of the :class:`Verdict` is an attribute
    (and a key) under its output name, derived from the verdict's field declarations
    (:meth:`Verdict.outputs`): ``scores`` ``[N]`` (``Verdict.score``, higher = more
    anomalous), ``p_values`` ``[N]`` in ``(0, 1]``, ``unsafe`` ``[N]`` bool (all ``False``
    unless ``policy="flag"``), ``anomaly_maps``, ``reasons``, ``view_scores``,
    ``view_p_values``, ``memorized``, ``copy_p_value``, ``nearest_index``; ``heatmaps``,
    ``gradcams``, ``shaps`` ``[N, 1, H, W]`` in ``[0, 1]`` when ``explain`` was requested,
    else ``None``; ``masks`` ``[N, 1, H, W]`` bool anomalous pixels when ``return_masks``,
    else ``None``.

    Attributes:
        images: the ``N`` returned images in the requested ``output_type``: every image for
            ``policy="flag"``, only safe ones for ``"resample"`` and ``"drop"``.
        verdict: the full :class:`Verdict` of the returned images.
        rejected: the images withheld (``"resample"``, ``"drop"``) with their verdicts.
        attempts: total images sampled over all rounds.
        rounds: sampling rounds run.
        num_requested: images asked for (the pipeline's first-round batch).
        num_safe: safe images returned (``"flag"``: safe images among the returned ones).
        budget_exhausted: ``"resample"`` stopped at ``max_rounds`` with fewer safe images
            than requested (``num_safe < num_requested``).
    """

    images: Images
    verdict: Verdict
    rejected: RejectedImages
    attempts: int
    rounds: int
    num_requested: int
    num_safe: int
    budget_exhausted: bool

    def add_verdict_outputs(self, outputs: dict[str, Any]) -> SafeGenFilterOutput:
        """Expose ``outputs`` (name -> value) as keys and attributes; ``None`` as attribute."""
        for name, value in outputs.items():
            if value is None:
                object.__setattr__(self, name, None)
            else:
                self[name] = value
        return self


class SafeGenFilter:
    """Score every image a diffusers pipeline samples and apply a policy.

    The policy itself is :class:`safegen_guard.sampling.SamplingPolicy` (no diffusers
    needed); this class adds the pipeline's call signature (:meth:`wrap`), output types and
    :class:`SafeGenFilterOutput`.

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
        batch_check: also run the batch realism test on every round
            (:class:`~safegen_guard.adaptive.BatchCheck`: real reference slices prepared like
            the training data): samples that a classifier trained on the round tells from
            real scans are rejected too, reason ``"batch_realism"``. Use batches of a few
            dozen images.

    Raises:
        TypeError: ``guard`` has no ``evaluate`` method, ``explain`` is not a bool/tuple, or
            ``batch_check`` is not a ``BatchCheck``.
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
        batch_check: BatchCheck | None = None,
    ) -> None:
        if not isinstance(return_masks, bool):
            raise TypeError(f"`return_masks` must be a bool, got {return_masks!r}")
        self.policy_runner = SamplingPolicy(
            guard,
            policy,
            max_rounds=max_rounds,
            explain=explain,
            audit_log=audit_log,
            source="diffusers",
            batch_check=batch_check,
        )
        self.return_masks = return_masks

    @property
    def guard(self) -> Any:
        """The guard that judges every image."""
        return self.policy_runner.guard

    @property
    def policy(self) -> str:
        """``"flag"``, ``"resample"`` or ``"drop"``."""
        return self.policy_runner.policy

    @property
    def explain(self) -> bool | tuple[str, ...]:
        """What ``guard.evaluate`` is asked to explain."""
        return self.policy_runner.explain

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
        result = self.policy_runner.run(sample_fn)
        out = self._package(result, output_type)
        return out if return_dict else (out.images, out.verdict)

    def _package(self, result: SamplingResult, output_type: str) -> SafeGenFilterOutput:
        v = result.verdict
        rejected = result.rejected
        out = SafeGenFilterOutput(
            images=tensor_to_output(result.images, output_type),
            verdict=v,
            rejected=replace(rejected, images=tensor_to_output(rejected.images, output_type)),
            attempts=result.attempts,
            rounds=result.rounds,
            num_requested=result.num_requested,
            num_safe=result.num_safe,
            budget_exhausted=result.budget_exhausted,
        )
        outputs = v.outputs()
        if not self.return_masks:
            outputs["masks"] = None
        return out.add_verdict_outputs(outputs)


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
