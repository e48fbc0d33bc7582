"""Tests of safegen_guard.validation: every rule has an error-path test with its message."""

from __future__ import annotations

import pytest
import torch

from safegen_guard.errors import InputValidationError
from safegen_guard.validation import (
    check_choice,
    check_images,
    check_positive_int,
    check_probability,
)


def test_check_images_returns_the_same_tensor_unchanged():
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    assert check_images(x, size=8) is x
    assert torch.equal(x, before)


def test_check_images_accepts_range_within_tolerance_and_rect_size():
    x = torch.zeros(1, 1, 4, 6)
    x[0, 0, 0, 0] = 1.00005
    x[0, 0, 0, 1] = -0.00005
    assert check_images(x, size=(4, 6)) is x


def test_check_images_not_a_tensor():
    with pytest.raises(TypeError, match=r"`images` must be a torch.Tensor .* got list"):
        check_images([[0.0]])


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (torch.rand(2, 8, 8), {}, r"must be a 4-D tensor \[B, C, H, W\], got shape \(2, 8, 8\)"),
        (torch.rand(0, 1, 8, 8), {}, r"at least one image, got an empty batch"),
        (torch.ones(1, 1, 8, 8, dtype=torch.uint8), {}, r"floating-point .* got dtype torch.uint8"),
        (torch.rand(1, 3, 8, 8), {}, r"must have 1 channel\(s\), got 3 \(shape \(1, 3, 8, 8\)\)"),
        (torch.rand(1, 1, 8, 8), {"size": 16}, r"must be 16x16 pixels, got 8x8"),
        (torch.rand(1, 1, 8, 8), {"size": (8, 4)}, r"must be 8x4 pixels, got 8x8"),
        (
            torch.full((1, 1, 4, 4), 2.0),
            {},
            r"intensities must lie in \[0, 1\], got range \[2, 2\]",
        ),
        (torch.full((1, 1, 4, 4), -0.5), {}, r"must lie in \[0, 1\], got range \[-0.5, -0.5\]"),
    ],
)
def test_check_images_rejects(x, kwargs, match):
    with pytest.raises(InputValidationError, match=match):
        check_images(x, **kwargs)


def test_input_validation_error_is_a_value_error_and_names_the_argument():
    with pytest.raises(ValueError, match=r"`calibration` must be a 4-D"):
        check_images(torch.rand(3), name="calibration")


def test_check_images_non_finite():
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    x[1, 0, 0, 0] = float("nan")
    x[2, 0, 1, 1] = float("inf")
    with pytest.raises(InputValidationError, match=r"NaN/Inf values in 2 of 3 image\(s\)"):
        check_images(x)
    # allowed: the range check ignores the non-finite values
    assert check_images(x, allow_non_finite=True) is x
    x[0, 0, 0, 0] = 3.0
    with pytest.raises(InputValidationError, match=r"got range \[.*, 3\]"):
        check_images(x, allow_non_finite=True)


def test_check_images_all_non_finite_and_no_range_check():
    x = torch.full((1, 1, 2, 2), float("nan"))
    assert check_images(x, allow_non_finite=True) is x
    y = torch.full((1, 1, 2, 2), 5.0)
    assert check_images(y, check_range=False) is y
    assert check_images(torch.rand(1, 4, 2, 2), channels=None).shape[1] == 4


def test_check_positive_int():
    assert check_positive_int(3, "n") == 3
    assert check_positive_int(0, "n", allow_zero=True) == 0
    with pytest.raises(ValueError, match=r"`n` must be a positive int, got 0"):
        check_positive_int(0, "n")
    with pytest.raises(ValueError, match=r"`n` must be a non-negative int, got -1"):
        check_positive_int(-1, "n", allow_zero=True)
    with pytest.raises(TypeError, match=r"`n` must be an int, got bool \(True\)"):
        check_positive_int(True, "n")
    with pytest.raises(TypeError, match=r"`n` must be an int, got float \(2.0\)"):
        check_positive_int(2.0, "n")


def test_check_probability():
    assert check_probability(0.05, "a") == 0.05
    assert isinstance(check_probability(1, "a", open_interval=False), float)
    assert check_probability(0, "a", open_interval=False) == 0.0
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"`a` must be in \(0, 1\), got "):
            check_probability(bad, "a")
    with pytest.raises(ValueError, match=r"`a` must be in \[0, 1\], got 2"):
        check_probability(2, "a", open_interval=False)
    with pytest.raises(TypeError, match=r"`a` must be a float, got str"):
        check_probability("0.1", "a")
    with pytest.raises(TypeError, match=r"`a` must be a float, got bool"):
        check_probability(True, "a")


def test_check_choice():
    assert check_choice("drop", "policy", ["flag", "drop"]) == "drop"
    with pytest.raises(ValueError, match=r"`policy` must be one of \['flag', 'drop'\], got 'x'"):
        check_choice("x", "policy", ("flag", "drop"))
