"""StyleGAN2 generator: plain torch networks and their Lightning module."""

from generators.stylegan2.module import StyleGAN2Module
from generators.stylegan2.networks import Discriminator, Generator, ModulatedConv2d

__all__ = ["StyleGAN2Module", "Generator", "Discriminator", "ModulatedConv2d"]
