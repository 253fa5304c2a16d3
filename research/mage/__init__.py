"""MAGE ("Make It Move", Hu et al., CVPR 2022) scaled down: text + first frame → video through a motion anchor."""

from research.mage.model import Mage, MageConfig
from research.mage.train import train_mage, train_vqvae

__all__ = ["Mage", "MageConfig", "train_mage", "train_vqvae"]
