from __future__ import annotations

import pytest
import torch

from safegen_guard.artifacts import (
    ARTIFACTS,
    SEVERITY_PRESETS,
    ArtifactKind,
    inject,
    list_artifacts,
    register_artifact,
    resolve_severity,
)
from safegen_guard.errors import InputValidationError


def test_presets() -> None:
    assert SEVERITY_PRESETS["strong"] == 1.0
    assert 0 < SEVERITY_PRESETS["mild"] < 1
    assert resolve_severity("mild") == SEVERITY_PRESETS["mild"]
    assert resolve_severity(1) == 1.0
    assert resolve_severity(0.25) == 0.25


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan")])
def test_bad_severity_value(bad: float) -> None:
    with pytest.raises(ValueError, match=r"`severity` must be in \(0, 1\]"):
        resolve_severity(bad)


def test_bad_severity_name(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"`severity` must be one of \['mild', 'strong'\]"):
        inject(images, "noise_local", "medium")


@pytest.mark.parametrize("bad", [True, None, [0.5]])
def test_bad_severity_type(bad: object, images: torch.Tensor) -> None:
    with pytest.raises(TypeError, match="`severity` must be a str preset or a float"):
        inject(images, "noise_local", bad)  # type: ignore[arg-type]


def test_unknown_kind_lists_known(images: torch.Tensor) -> None:
    with pytest.raises(
        ValueError, match=r"unknown artifact kind 'smudge'; known kinds: \[.*noise_local"
    ):
        inject(images, "smudge")


def test_kind_type(images: torch.Tensor) -> None:
    with pytest.raises(TypeError, match="`kind` must be a str, got int"):
        inject(images, 3)  # type: ignore[arg-type]


def test_generator_type(images: torch.Tensor) -> None:
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator or None, got int"):
        inject(images, "noise_local", "strong", 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ("not a tensor", TypeError, "`images` must be a torch.Tensor"),
        (torch.rand(1, 64, 64), InputValidationError, "must be a 4-D tensor"),
        (torch.rand(1, 2, 16, 16), InputValidationError, r"must have 1 channel\(s\), got 2"),
        (torch.zeros(1, 1, 16, 16, dtype=torch.uint8), InputValidationError, "floating-point"),
        (torch.full((1, 1, 16, 16), float("nan")), InputValidationError, "must be finite"),
        (torch.full((1, 1, 16, 16), 2.0), InputValidationError, r"must lie in \[0, 1\]"),
        (torch.zeros(0, 1, 16, 16), InputValidationError, "at least one image"),
    ],
)
def test_bad_images(bad: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        inject(bad, "noise_global")  # type: ignore[arg-type]


def test_bad_foreground(images: torch.Tensor) -> None:
    with pytest.raises(TypeError, match="`foreground` must be a bool torch.Tensor"):
        inject(images, "dropout", foreground=[1])  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"`foreground` must be a bool tensor of shape \(3, 1, 64, 64\)"
    ):
        inject(images, "dropout", foreground=torch.ones_like(images))
    with pytest.raises(ValueError, match=r"got dtype torch.bool and shape \(1, 1, 64, 64\)"):
        inject(images, "dropout", foreground=torch.ones_like(images[:1]).bool())


def test_register_and_list() -> None:
    kind = ARTIFACTS["noise_local"]
    assert isinstance(kind, ArtifactKind) and kind.local and kind.modality == "any"
    assert ARTIFACTS["ring"].modality == "ct" and not ARTIFACTS["ring"].local
    assert kind.description.startswith("Gaussian noise")
    assert list_artifacts() == sorted(ARTIFACTS)
    with pytest.raises(ValueError, match="artifact kind 'noise_local' is already registered"):
        register_artifact("noise_local", local=True)
    with pytest.raises(ValueError, match=r"`modality` must be one of \['any', 'mri', 'ct'\]"):
        register_artifact("xray_thing", local=False, modality="xray")


def test_custom_kind_roundtrip(images: torch.Tensor) -> None:
    @register_artifact("test_invert_patch", local=True, description="inverts a square")
    def _invert(x, severity, generator, foreground):  # noqa: ANN001, ANN202
        support = torch.zeros_like(x, dtype=torch.bool)
        support[..., 20:30, 20:30] = True
        return torch.where(support, 1 - x, x), support

    try:
        assert "test_invert_patch" in list_artifacts(local=True)
        out, mask = inject(images, "test_invert_patch")
        assert mask[..., 20:30, 20:30].float().mean() > 0.5
        assert not mask[..., :18, :].any()
    finally:
        del ARTIFACTS["test_invert_patch"]
