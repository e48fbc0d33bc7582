"""Input validation shared by every SAFEGEN entry point.

Every public function that takes an image batch calls :func:`check_images`, so all of them
reject bad input with the same precise message: what was expected and what was received.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from safegen_guard.errors import InputValidationError

__all__ = ["check_images", "check_positive_int", "check_probability", "check_choice"]

_RANGE_TOLERANCE = 1e-4


def check_images(
    x: object,
    *,
    name: str = "images",
    channels: int | None = 1,
    size: int | tuple[int, int] | None = None,
    allow_non_finite: bool = False,
    check_range: bool = True,
) -> torch.Tensor:
    """Check that ``x`` is a batch of images ``[B, C, H, W]`` with intensities in [0, 1].

    Nothing is clamped or converted: a bad batch is rejected, a good one is returned as is.

    Args:
        x: The candidate batch. Expected: floating-point ``torch.Tensor`` of shape
            ``[B, C, H, W]`` with ``B >= 1`` and finite values in ``[0, 1]``.
        name: Name of the argument, used in error messages.
        channels: Required channel count ``C``; ``None`` accepts any.
        size: Required spatial size, ``S`` for ``S x S`` or ``(H, W)``; ``None`` accepts any.
        allow_non_finite: Accept NaN/Inf values (the range check then ignores them). Used by
            ``Guard.evaluate``, which turns non-finite images into verdicts.
        check_range: Check that finite values lie in ``[0, 1]`` (tolerance 1e-4).

    Returns:
        The same tensor ``x``.

    Raises:
        TypeError: ``x`` is not a tensor.
        InputValidationError: (a ``ValueError``) wrong rank, empty batch, non-float dtype,
            wrong channel count or size, non-finite values, or values outside ``[0, 1]``.

    Example:
        >>> import torch
        >>> check_images(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 1, 8, 8])
        >>> try:
        ...     check_images(torch.rand(2, 8, 8))
        ... except ValueError as err:
        ...     print(err)
        `images` must be a 4-D tensor [B, C, H, W], got shape (2, 8, 8)
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor [B, C, H, W], got {type(x).__name__}")
    if x.ndim != 4:
        raise InputValidationError(
            f"`{name}` must be a 4-D tensor [B, C, H, W], got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise InputValidationError(f"`{name}` must hold at least one image, got an empty batch")
    if not x.is_floating_point():
        raise InputValidationError(
            f"`{name}` must be a floating-point tensor with intensities in [0, 1], got dtype "
            f"{x.dtype} (convert with `x.float() / 255` for 8-bit images)"
        )
    if channels is not None and x.shape[1] != channels:
        raise InputValidationError(
            f"`{name}` must have {channels} channel(s), got {x.shape[1]} (shape {tuple(x.shape)})"
        )
    if size is not None:
        expected = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(x.shape[-2:]) != expected:
            raise InputValidationError(
                f"`{name}` must be {expected[0]}x{expected[1]} pixels, got "
                f"{x.shape[-2]}x{x.shape[-1]} (resize before scoring)"
            )
    finite = torch.isfinite(x)
    if not allow_non_finite and not bool(finite.all()):
        bad = int((~finite).flatten(1).any(1).sum())
        raise InputValidationError(
            f"`{name}` must be finite, got NaN/Inf values in {bad} of {x.shape[0]} image(s)"
        )
    if check_range:
        values = x[finite] if not bool(finite.all()) else x
        if values.numel() > 0:
            lo, hi = float(values.min()), float(values.max())
            if lo < -_RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
                raise InputValidationError(
                    f"`{name}` intensities must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]"
                )
    return x


def check_positive_int(value: object, name: str, *, allow_zero: bool = False) -> int:
    """Return ``value`` if it is a positive int (or non-negative with ``allow_zero``).

    Raises:
        TypeError: ``value`` is not an int (bools are rejected too).
        ValueError: ``value`` is not positive.

    Example:
        >>> check_positive_int(3, "every_n_steps")
        3
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__} ({value!r})")
    if value < 0 or (value == 0 and not allow_zero):
        rule = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"`{name}` must be {rule} int, got {value}")
    return value


def check_probability(value: object, name: str, *, open_interval: bool = True) -> float:
    """Return ``value`` as float if it is a probability (in (0, 1), or [0, 1] when closed).

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is outside the interval.

    Example:
        >>> check_probability(0.05, "false_reject_rate")
        0.05
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a float, got {type(value).__name__} ({value!r})")
    v = float(value)
    ok = 0.0 < v < 1.0 if open_interval else 0.0 <= v <= 1.0
    if not ok:
        interval = "(0, 1)" if open_interval else "[0, 1]"
        raise ValueError(f"`{name}` must be in {interval}, got {value}")
    return v


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ValueError: ``value`` is not one of ``choices``.

    Example:
        >>> check_choice("flag", "policy", ["flag", "drop"])
        'flag'
    """
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}")
    return str(value)
