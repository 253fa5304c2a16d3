"""The text-to-video GAN: its settings, and one module bundling the components with their losses, sampling and files.

The pipeline is the blog's: sentence embedding → conditioning augmentation → StackGAN stage-I image → VideoGAN
two-stream video. Both stages train together in one loop (see `train.py`); the video stage takes the image as a
given input (gradients stop there, as StackGAN's stage II treats stage I), so the image is shaped only by the image
critic, and the switch `text_match` changes nothing but the video critic's matching term.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from research.tgan.image import (
    ConditioningAugmentation,
    ImageDiscriminator,
    ImageGenerator,
    kl_divergence,
    upsamplings,
)
from research.tgan.text import TextEncoder
from research.tgan.video import VideoDiscriminator, VideoGenerator, VideoOutput

CONFIG_FILE, WEIGHTS_FILE = "config.json", "tgan.pt"
LOSSES = ("hinge", "bce")


@dataclass(frozen=True)
class TganConfig:
    """Sizes and loss weights of a `Tgan`; `tiny()` for tests, `bench()` for the ≤ 20-minute benchmark run."""

    vocab_size: int
    text_length: int = 24  # ids per text, padding included
    frames: int = 16
    size: int = 64  # frames are size × size
    word_dim: int = 32
    text_dim: int = 64  # the sentence embedding
    cond_dim: int = 32  # c from conditioning augmentation
    noise_dim: int = 32  # z, one for the image and one for the motion
    code_dim: int = 32  # the text code the critics compress the embedding to
    width: int = 16  # channels at full size; doubling towards 4×4, capped at 8·width
    text_match: bool = True  # give the video critic a text-matching head (the blog's missing term)
    loss: str = "hinge"  # "hinge" (SNGAN's) or "bce" (the original GAN's, as StackGAN and VideoGAN train)
    spectral_norm: bool = True  # spectral normalisation of every critic layer (Miyato et al. 2018)
    kl_weight: float = 2.0  # StackGAN's λ for the conditioning-augmentation KL
    mask_weight: float = 0.1  # VideoGAN's λ for the mask's L1 sparsity
    text_steps: int = 1500  # steps that train the text encoder alone before the GAN starts
    text_lr: float = 3e-3  # spells its texts back (cross-entropy ≈ 0.03) in about 10 s at 64 dims

    def __post_init__(self) -> None:
        upsamplings(self.size)
        for name in ("vocab_size", "text_length", "word_dim", "text_dim", "cond_dim", "noise_dim", "code_dim", "width"):
            if getattr(self, name) < 1 or (name == "vocab_size" and self.vocab_size < 2):
                raise ValueError(f"{name} must be a positive size (vocab_size ≥ 2), got {getattr(self, name)}")
        if self.frames < 2:
            raise ValueError(f"frames must be at least 2, got {self.frames}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.kl_weight < 0 or self.mask_weight < 0 or self.text_steps < 0 or self.text_lr <= 0:
            raise ValueError("kl_weight, mask_weight and text_steps must be ≥ 0 and text_lr > 0")

    @classmethod
    def tiny(cls, vocab_size: int, **changes: Any) -> TganConfig:
        """A few thousand parameters at 16×16 × 4 frames, for tests."""
        sizes = dict(text_length=8, frames=4, size=16, word_dim=8, text_dim=16, cond_dim=8, noise_dim=8, code_dim=8)
        return cls(vocab_size=vocab_size, **{**sizes, "width": 4, "text_steps": 20, **changes})

    @classmethod
    def bench(cls, vocab_size: int, **changes: Any) -> TganConfig:
        """64×64 × 16 frames: one step at batch 16 takes about 1 s on one CPU thread, so ~1000 steps in ≤ 20 min."""
        return cls(vocab_size=vocab_size, **changes)

    def to_json(self) -> str:
        """The settings as JSON."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TganConfig:
        """Settings back from `to_json`; unknown keys are an error."""
        data = json.loads(text)
        unknown = set(data) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"config has unknown keys {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class Fakes:
    """One generated batch: the stage-I image in [-1, 1], the video's parts, and the condition's μ and log σ."""

    image: Tensor  # (B, 3, H, W)
    video: VideoOutput
    mu: Tensor  # (B, cond_dim)
    log_sigma: Tensor  # (B, cond_dim)

    def detached(self) -> Fakes:
        """The same batch cut from the generators' graph, for the critics' step."""
        video = VideoOutput(**{f.name: getattr(self.video, f.name).detach() for f in dataclasses.fields(VideoOutput)})
        return Fakes(self.image.detach(), video, self.mu.detach(), self.log_sigma.detach())


def critic_loss(kind: str, logits: Tensor, real: bool, weight: Tensor | None = None) -> Tensor:
    """The critic's loss on `logits` it should call real (or fake), averaged over the rows `weight` keeps."""
    if kind == "bce":
        losses = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)), reduction="none")
    else:  # hinge: only logits on the wrong side of ±1 cost anything
        losses = F.relu(1 - logits) if real else F.relu(1 + logits)
    if weight is None:
        return losses.mean()
    return (losses * weight).sum() / weight.sum().clamp(min=1)


def generator_loss(kind: str, logits: Tensor) -> Tensor:
    """The generator's loss for making the critic say real on `logits`."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    return -logits.mean()


def spectrally_normalised(module: nn.Module) -> nn.Module:
    """`module` with spectral normalisation on each of its convolutions and linear layers."""
    layers = [m for m in module.modules() if isinstance(m, nn.Conv2d | nn.Conv3d | nn.Linear)]
    for layer in layers:
        nn.utils.parametrizations.spectral_norm(layer)
    return module


class Tgan(nn.Module):
    """Text encoder, conditioning augmentation, image and video generators and their two critics."""

    def __init__(self, config: TganConfig) -> None:
        super().__init__()
        self.config = c = config
        self.text_encoder = TextEncoder(
            vocab_size=c.vocab_size, max_length=c.text_length, word_dim=c.word_dim, dim=c.text_dim
        )
        self.augmentation = ConditioningAugmentation(text_dim=c.text_dim, cond_dim=c.cond_dim)
        self.image_generator = ImageGenerator(cond_dim=c.cond_dim, noise_dim=c.noise_dim, size=c.size, width=c.width)
        self.video_generator = VideoGenerator(
            cond_dim=c.cond_dim, noise_dim=c.noise_dim, size=c.size, frames=c.frames, width=c.width
        )
        self.image_discriminator = ImageDiscriminator(
            size=c.size, width=c.width, text_dim=c.text_dim, code_dim=c.code_dim
        )
        self.video_discriminator = VideoDiscriminator(
            size=c.size,
            frames=c.frames,
            width=c.width,
            text_dim=c.text_dim,
            code_dim=c.code_dim,
            text_match=c.text_match,
        )
        if c.spectral_norm:
            spectrally_normalised(self.image_discriminator)
            spectrally_normalised(self.video_discriminator)

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.parameters()).device

    def generator_parameters(self) -> list[nn.Parameter]:
        """What the G step trains: conditioning augmentation and both generators."""
        parts = (self.augmentation, self.image_generator, self.video_generator)
        return [p for part in parts for p in part.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """What the D step trains: both critics."""
        return [*self.image_discriminator.parameters(), *self.video_discriminator.parameters()]

    def check_videos(self, videos: Tensor) -> None:
        """Raise unless `videos` is float (B, frames, 3, size, size) in [0, 1]."""
        c = self.config
        expected = (c.frames, 3, c.size, c.size)
        if videos.dim() != 5 or tuple(videos.shape[1:]) != expected or not videos.is_floating_point():
            raise ValueError(f"videos must be float (B, {', '.join(map(str, expected))}), got {tuple(videos.shape)}")
        if float(videos.min()) < 0 or float(videos.max()) > 1:
            raise ValueError(f"videos must lie in [0, 1], got [{float(videos.min()):.3g}, {float(videos.max()):.3g}]")

    def embed(self, text: Tensor) -> Tensor:
        """The sentence embedding the GAN conditions on: fixed here, trained only by the encoder's own objective."""
        with torch.no_grad():
            return self.text_encoder(text.to(self.device))

    def sample(self, text: Tensor, *, generator: torch.Generator | None = None) -> Fakes:
        """Generate a batch for `text`; ε, then the image's z, then the motion's z are drawn from `generator`."""
        # 1. encode the text and draw the condition
        embedding = self.embed(text)
        condition, mu, log_sigma = self.augmentation(embedding, generator=generator)
        # 2. stage I: the image
        shape = (text.shape[0], self.config.noise_dim)
        image_noise = torch.randn(shape, generator=generator, device=self.device)
        motion_noise = torch.randn(shape, generator=generator, device=self.device)
        image = self.image_generator(condition, image_noise)
        # 3. the video around the image, which it takes as given
        video = self.video_generator(image.detach(), condition, motion_noise)
        return Fakes(image=image, video=video, mu=mu, log_sigma=log_sigma)

    def discriminator_losses(self, videos: Tensor, text: Tensor, fakes: Fakes) -> dict[str, Tensor]:
        """The critics' losses on real `videos` in [0, 1] with their `text` and on `fakes`; "total" is minimised."""
        # 1. check inputs; the wrong text of each clip is the next clip's, unless the two texts are the same
        self.check_videos(videos)
        if videos.shape[0] != text.shape[0] or videos.shape[0] != fakes.video.video.shape[0] or videos.shape[0] < 2:
            raise ValueError(f"videos, text and fakes need one equal batch ≥ 2, got {videos.shape[0]}, {text.shape[0]}")
        right = self.embed(text)
        wrong = right.roll(1, 0)
        differs = (text != text.roll(1, 0)).any(1).to(right.dtype)
        real = videos.to(self.device) * 2 - 1
        # 2. the image critic, matching-aware as StackGAN's: the real image is the clip's first frame
        kind, image_critic, video_critic = self.config.loss, self.image_discriminator, self.video_discriminator
        real_image, fake_image = image_critic.features(real[:, 0]), image_critic.features(fakes.image)
        image = critic_loss(kind, image_critic.match(real_image, right), True) + 0.5 * (
            critic_loss(kind, image_critic.match(real_image, wrong), False, differs)
            + critic_loss(kind, image_critic.match(fake_image, right), False)
        )
        # 3. the video critic's real/fake head
        real_video, fake_video = video_critic.features(real), video_critic.features(fakes.video.video)
        video_adversarial = critic_loss(kind, video_critic.real(real_video), True) + critic_loss(
            kind, video_critic.real(fake_video), False
        )
        losses = {"image": image, "video_adversarial": video_adversarial}
        # 4. its matching head, when on: a real video with a wrong text is as wrong as a fake one
        video = video_adversarial
        if self.config.text_match:
            losses["video_match"] = critic_loss(kind, video_critic.match(real_video, right), True) + 0.5 * (
                critic_loss(kind, video_critic.match(real_video, wrong), False, differs)
                + critic_loss(kind, video_critic.match(fake_video, right), False)
            )
            video = video + losses["video_match"]
        return {**losses, "video": video, "total": image + video}

    def generator_losses(self, text: Tensor, fakes: Fakes) -> dict[str, Tensor]:
        """The generators' losses on `fakes` made for `text`; "total" is minimised."""
        # 1. fool the image critic with the right text
        kind, right, critic = self.config.loss, self.embed(text), self.image_discriminator
        image = generator_loss(kind, critic.match(critic.features(fakes.image), right))
        # 2. fool the video critic's real/fake head and, when on, its matching head
        features = self.video_discriminator.features(fakes.video.video)
        losses = {"image": image, "video_adversarial": generator_loss(kind, self.video_discriminator.real(features))}
        if self.config.text_match:
            losses["video_match"] = generator_loss(kind, self.video_discriminator.match(features, right))
        # 3. regularise: the condition's KL to N(0, I) and the mask's sparsity
        losses["kl"] = kl_divergence(fakes.mu, fakes.log_sigma)
        losses["mask"] = fakes.video.mask.abs().mean()
        adversarial = (
            image + losses["video_adversarial"] + losses.get("video_match", torch.zeros((), device=self.device))
        )
        total = adversarial + self.config.kl_weight * losses["kl"] + self.config.mask_weight * losses["mask"]
        return {**losses, "total": total}

    def generate(self, text: Tensor, *, seed: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Videos (B, frames, 3, size, size) in [0, 1] for `text`, deterministic given `seed` or `generator`."""
        # 1. check inputs and set up the noise
        if seed is not None and generator is not None:
            raise ValueError("give seed or generator, not both")
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        # 2. sample (no batch statistics anywhere, so train and eval mode give the same videos)
        with torch.no_grad():
            video = self.sample(text, generator=generator).video.video
        # 3. back to [0, 1]
        return ((video + 1) / 2).clamp(0, 1)

    def save(self, directory: str | Path) -> None:
        """Write the weights and the config JSON into `directory` (created if missing)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(self.config.to_json(), "utf-8")
        torch.save(self.state_dict(), directory / WEIGHTS_FILE)

    @classmethod
    def load(cls, directory: str | Path) -> Tgan:
        """A model back from `save`, on the CPU."""
        directory = Path(directory)
        model = cls(TganConfig.from_json((directory / CONFIG_FILE).read_text("utf-8")))
        model.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        return model
