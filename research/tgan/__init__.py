"""The text-to-video GAN: a sentence embedding, a StackGAN stage-I image, a VideoGAN two-stream video, two critics."""

from research.tgan.model import Fakes, Tgan, TganConfig
from research.tgan.train import train_tgan

__all__ = ["Fakes", "Tgan", "TganConfig", "train_tgan"]
