"""Plain-language meaning of every verdict reason (shown in reports, the review app, README)."""

from __future__ import annotations

__all__ = ["REASONS", "describe"]

#: reason name -> what it means to a person looking at the image.
REASONS: dict[str, str] = {
    "recon": "the autoencoder trained on real scans cannot rebuild part of the image through its "
    "bottleneck: structure unlike real anatomy (missing or foreign regions, patterns)",
    "denoise": "the autoencoder's skip path leaves a large residual: fine-scale content unlike "
    "real scans (local noise, grid or checkerboard patterns)",
    "noise": "the overall noise level differs from real scans (too noisy or too smooth)",
    "texture": "local texture differs from real scans at the same place and brightness "
    "(blurred or noisy patches)",
    "spectrum": "the power spectrum has spikes or bands real scans do not have (periodic "
    "patterns, k-space spikes, aliasing)",
    "sharpness": "high frequencies are missing in some direction (blur, motion smearing)",
    "ring": "concentric structure in the residual (ring or Gibbs-like artifacts)",
    "patch_density": "some patches are unlike every real patch the guard has seen (their "
    "realism-network features are far from a bank of real-scan patches): unfamiliar local "
    "content such as noise, foreign structure or generator artifacts",
    "image_density": "the image as a whole is unlike every real scan the guard has seen (its "
    "layout of realism-network features is far from those of real images): wrong size, "
    "position, brightness or arrangement of anatomy, even when every patch looks real",
    "fpi": "the realism network, trained to find pieces of other slices blended into a real "
    "slice, sees foreign patches (pasted, ghosted or wrapped-around content)",
    "ams": "the realism network's features of the image and of its reconstruction differ at "
    "several scales: content the network cannot reproduce",
    "memorized": "the image is a near copy of one of the generator's training images "
    "(privacy: see the nearest training file)",
    "non_finite": "the image contains NaN or infinite values",
}


def describe(reason: str) -> str:
    """The meaning of ``reason`` (unknown names, e.g. views added later, return a placeholder)."""
    return REASONS.get(reason, "a view added outside this glossary fired")
