"""The guard as a diffusers component, and a DDPM pipeline that saves and loads it.

``model_index.json`` records a custom component under its module path
(``safegen_guard.integrations.diffusers_component``); diffusers only loads it when that module
is already imported, which importing :class:`SafeGenDDPMPipeline` guarantees.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from diffusers import ConfigMixin, DDPMPipeline, ModelMixin, SchedulerMixin, UNet2DModel
from diffusers.configuration_utils import register_to_config

from safegen_guard.config import GuardConfig
from safegen_guard.errors import CheckpointError
from safegen_guard.guard import Guard
from safegen_guard.integrations.diffusers import SafeGenFilter, SafeGenFilterOutput
from safegen_guard.verdict import Verdict

__all__ = ["SafeGenGuardComponent", "SafeGenDDPMPipeline"]

log = logging.getLogger(__name__)


class SafeGenGuardComponent(ModelMixin, ConfigMixin):
    """A :class:`~safegen_guard.Guard` that ``save_pretrained`` / ``from_pretrained`` understand.

    The configuration (``config.json``) is plain JSON: the guard's ``GuardConfig``, its data
    fingerprint, the shapes of its data-sized buffers and its fingerprint. The guard's
    tensors are this module's parameters and buffers, written as safetensors.

    Args:
        guard_config: ``GuardConfig.to_dict()`` of the guard.
        data_fingerprint: fingerprint of the guard's real training data.
        tensor_shapes: shape of every tensor of ``guard.state_dict()`` (calibration buffers
            are sized by the calibration data).
        guard_fingerprint: the guard's fingerprint, checked by :meth:`checked_guard`.

    Example:
        >>> component = SafeGenGuardComponent.from_guard(guard)  # doctest: +SKIP
        >>> component.checked_guard().evaluate(images)  # doctest: +SKIP
    """

    @register_to_config
    def __init__(
        self,
        guard_config: dict[str, Any],
        data_fingerprint: str = "",
        tensor_shapes: dict[str, list[int]] | None = None,
        guard_fingerprint: str = "",
    ) -> None:
        super().__init__()
        self.guard = Guard(GuardConfig.from_dict(guard_config), data_fingerprint=data_fingerprint)
        _resize_buffers(self.guard, tensor_shapes or {})

    @classmethod
    def from_guard(cls, guard: Guard) -> SafeGenGuardComponent:
        """Copy a fitted guard into a new component (the guard itself is not modified).

        Raises:
            TypeError: ``guard`` is not a :class:`Guard`.
            ValueError: the guard has an attached explainer (not stored by this component).
        """
        if not isinstance(guard, Guard):
            raise TypeError(f"`guard` must be a safegen_guard.Guard, got {type(guard).__name__}")
        if guard.explainer is not None:
            raise ValueError(
                "SafeGenGuardComponent stores the detector and calibration only, got a guard "
                "with an attached explainer; save it with Guard.save instead"
            )
        state = guard.state_dict()
        component = cls(
            guard_config=guard.config.to_dict(),
            data_fingerprint=guard.data_fingerprint,
            tensor_shapes={k: list(v.shape) for k, v in state.items()},
            guard_fingerprint=guard.fingerprint,
        )
        component.guard.load_state_dict(state, strict=True)
        return component.eval()

    def checked_guard(self) -> Guard:
        """Return the guard after checking its fingerprint against the saved one.

        Raises:
            CheckpointError: the tensors do not reproduce ``guard_fingerprint``.
        """
        expected = self.config.guard_fingerprint
        self.guard.detector.channels_last()  # the loader may rebuild weights contiguously
        self.guard._fingerprint = ""  # recompute from the tensors actually loaded
        if expected and self.guard.fingerprint != expected:
            raise CheckpointError(
                f"the pipeline's guard has fingerprint {self.guard.fingerprint}, its config "
                f"records {expected}; refusing to use a modified guard"
            )
        return self.guard


def _resize_buffers(module: torch.nn.Module, shapes: dict[str, list[int]]) -> None:
    """Give data-sized buffers their saved shapes so strict loading accepts the tensors."""
    for name, shape in shapes.items():
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        buf = owner._buffers.get(leaf)
        if buf is not None and list(buf.shape) != list(shape):
            owner._buffers[leaf] = torch.zeros(shape, dtype=buf.dtype)


class SafeGenDDPMPipeline(DDPMPipeline):
    """``DDPMPipeline`` with an optional ``safety_guard`` component applied after sampling.

    ``save_pretrained`` writes the guard next to the UNet and the scheduler;
    ``SafeGenDDPMPipeline.from_pretrained(dir)`` restores it. Add a guard to an existing
    pipeline with ``SafeGenDDPMPipeline.from_pipe(pipe, safety_guard=guard)``.

    Args:
        unet: the denoising ``UNet2DModel``.
        scheduler: a scheduler (``DDPMScheduler``, ``DDIMScheduler``, ...).
        safety_guard: a :class:`SafeGenGuardComponent`, a fitted :class:`Guard` (wrapped),
            or ``None`` (the pipeline then behaves as ``DDPMPipeline``).
    """

    _optional_components = ["safety_guard"]

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: SchedulerMixin,
        safety_guard: SafeGenGuardComponent | Guard | None = None,
    ) -> None:
        super().__init__(unet=unet, scheduler=scheduler)
        if isinstance(safety_guard, Guard):
            safety_guard = SafeGenGuardComponent.from_guard(safety_guard)
        if safety_guard is not None and not isinstance(safety_guard, SafeGenGuardComponent):
            raise TypeError(
                "`safety_guard` must be a SafeGenGuardComponent, a Guard or None, got "
                f"{type(safety_guard).__name__}"
            )
        self.register_modules(safety_guard=safety_guard)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | None = None,
        num_inference_steps: int = 1000,
        output_type: str | None = "pil",
        return_dict: bool = True,
        *,
        safety_policy: str = "flag",
        max_rounds: int = 4,
        explain: bool | tuple[str, ...] = False,
        return_masks: bool = False,
        audit_log: str | os.PathLike | None = None,
    ) -> SafeGenFilterOutput | tuple[Any, Verdict] | Any:
        """Sample, judge every image with the guard, apply ``safety_policy``.

        Args:
            batch_size: number of images wanted (safe ones for ``"resample"``).
            generator: one ``torch.Generator`` for reproducible samples and resamples.
            num_inference_steps: denoising steps per round.
            output_type: ``"pil"``, ``"np"`` (``[N, H, W, C]``) or ``"pt"`` (``[N, C, H, W]``),
                values in ``[0, 1]``.
            return_dict: return a :class:`SafeGenFilterOutput` (else ``(images, verdict)``).
            safety_policy: ``"flag"``, ``"resample"`` or ``"drop"`` (see :class:`SafeGenFilter`).
            max_rounds: sampling rounds allowed by ``"resample"``.
            explain: heatmaps from the guard's explainer (``True`` or method names).
            return_masks: also return anomaly masks ``[N, 1, H, W]``.
            audit_log: JSONL audit log path.

        Returns:
            A :class:`SafeGenFilterOutput`; without a ``safety_guard``, ``DDPMPipeline``'s
            own output (with a warning).
        """
        # 1. Without a guard this is a plain DDPMPipeline.
        if self.safety_guard is None:
            log.warning("SafeGenDDPMPipeline has no safety_guard: images are NOT checked")
            return super().__call__(
                batch_size, generator, num_inference_steps, output_type, return_dict
            )
        # 2. Build the filter from the stored guard (fingerprint checked).
        safety_filter = SafeGenFilter(
            self.safety_guard.checked_guard(),
            safety_policy,
            max_rounds=max_rounds,
            explain=explain,
            return_masks=return_masks,
            audit_log=audit_log,
        )

        # 3. Sample rounds of `n` images with the parent pipeline, as tensors.
        def draw(n: int | None) -> torch.Tensor:
            size = batch_size if n is None else n
            return (
                super(SafeGenDDPMPipeline, self)
                .__call__(size, generator, num_inference_steps, "pt", True)
                .images
            )

        # 4. Filter, convert to `output_type`.
        return safety_filter.sample(draw, output_type=output_type or "pil", return_dict=return_dict)
