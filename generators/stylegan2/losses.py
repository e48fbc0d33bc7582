"""StyleGAN2 losses: non-saturating logistic loss, R1 penalty, path-length penalty."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["generator_loss", "discriminator_loss", "r1_penalty", "path_length_penalty"]


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``mean(softplus(-D(G(z))))``.

    Args:
        fake_logits: ``[B]`` discriminator logits on generated images.

    Returns:
        Scalar loss.
    """
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic discriminator loss ``mean(softplus(D(fake))) + mean(softplus(-D(real)))``.

    Args:
        real_logits: ``[B]`` logits on real images.
        fake_logits: ``[B]`` logits on generated images.

    Returns:
        Scalar loss.
    """
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 penalty ``mean ||d D(x) / d x||^2`` on real images (differentiable).

    Args:
        real_logits: ``[B]`` logits computed from ``real_images``.
        real_images: ``[B, C, H, W]`` with ``requires_grad=True``.

    Returns:
        Scalar penalty (to be multiplied by ``gamma / 2``).

    Raises:
        ValueError: ``real_images`` does not require grad.
    """
    if not real_images.requires_grad:
        raise ValueError(
            "`real_images` must require grad for the R1 penalty, got requires_grad=False"
        )
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()


def path_length_penalty(
    images: torch.Tensor, w: torch.Tensor, pl_mean: torch.Tensor, decay: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Path-length penalty ``mean((|J_w^T y| - a)^2)`` with ``y`` random image-space noise.

    Args:
        images: ``[B, C, H, W]`` generated from ``w`` (differentiable).
        w: ``[B, w_dim]`` with ``requires_grad=True``.
        pl_mean: Scalar running mean ``a`` of the path lengths (updated in place).
        decay: Running-mean decay.

    Returns:
        ``(penalty, lengths)``: scalar penalty and ``[B]`` path lengths.
    """
    h, wd = images.shape[2], images.shape[3]
    noise = torch.randn_like(images) / math.sqrt(h * wd)
    (grad,) = torch.autograd.grad((images * noise).sum(), w, create_graph=True)
    lengths = grad.square().sum(dim=1).sqrt()
    pl_mean.copy_(pl_mean.lerp(lengths.detach().mean(), decay))
    return (lengths - pl_mean).square().mean(), lengths
