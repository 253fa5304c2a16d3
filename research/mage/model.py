"""MAGE (Hu et al., "Make It Move", CVPR 2022), scaled down: the components bundled, with loss, sampling and files.

Departures from the paper beyond those noted in each component: far smaller (the paper's CATER model is 512 wide with
16×16 tokens a frame and a 512-vector codebook; the bench preset is 64 wide with 8×8 tokens and 128 vectors), no scalar
explicit condition (speed), sampling may draw tokens at a temperature besides the paper's greedy argmax, and the first
output frame is the conditioning frame passed through the VQ-VAE (the paper pastes the original frame back) so that
every frame went through the same codec.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from research.mage.anchor import (
    ImplicitRandomness,
    MotionAnchor,
    VideoPosterior,
    kl_to_standard_normal,
    sample_gaussian,
)
from research.mage.text import TextEncoder, TextFeatures
from research.mage.transformer import AxialTransformer, TokenEmbedding
from research.mage.vqvae import VQVAE

CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.pt"


@dataclass(frozen=True)
class MageConfig:
    """Every size of the model; `tiny()` for tests, `bench()` for the 20-minute benchmark on 2 CPU cores."""

    vocab_size: int
    image_size: int = 64
    max_frames: int = 12  # the longest clip, first frame included
    text_length: int = 32
    # VQ-VAE
    downsample: int = 8
    vq_channels: int = 64
    code_dim: int = 32
    codebook_size: int = 128
    vq_res_blocks: int = 1
    commitment: float = 0.25
    # text encoder, motion anchor, axial transformer
    width: int = 64
    heads: int = 4
    text_layers: int = 2
    anchor_layers: int = 1
    layers: int = 6  # axial blocks, cycling time, height, width
    dropout: float = 0.1
    # implicit randomness
    randomness: bool = True
    z_channels: int = 8
    kl_weight: float = 5e-4  # the paper's β for CATER-GEN

    @classmethod
    def tiny(cls, vocab_size: int, **overrides: object) -> MageConfig:
        """A few tens of thousands of parameters on 16×16 frames: for tests."""
        sizes: dict[str, object] = dict(
            image_size=16, max_frames=6, text_length=12, downsample=4, vq_channels=16, code_dim=8, codebook_size=32,
            width=16, heads=2, text_layers=1, anchor_layers=1, layers=3, dropout=0.0, z_channels=4,
        )  # fmt: skip
        return cls(vocab_size=vocab_size, **{**sizes, **overrides})  # type: ignore[arg-type]

    @classmethod
    def bench(cls, vocab_size: int, **overrides: object) -> MageConfig:
        """64×64 frames as 8×8 tokens, 64 wide, about 1 M parameters: fits the benchmark's 20 minutes on 2 CPU cores."""
        return cls(vocab_size=vocab_size, **overrides)  # type: ignore[arg-type]

    @property
    def grid(self) -> int:
        """Tokens per side of a frame."""
        return self.image_size // self.downsample

    def __post_init__(self) -> None:
        if self.image_size % self.downsample:
            raise ValueError(f"image_size ({self.image_size}) must divide by downsample ({self.downsample})")
        if self.max_frames < 2:
            raise ValueError(f"max_frames must be at least 2, got {self.max_frames}")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must divide by heads ({self.heads})")


class Mage(nn.Module):
    """Image + text → video: VQ-VAE tokens, motion anchor with implicit randomness, axial next-frame transformer."""

    def __init__(self, config: MageConfig) -> None:
        super().__init__()
        c = self.config = config
        self.vqvae = VQVAE(
            channels=c.vq_channels, code_dim=c.code_dim, codebook_size=c.codebook_size, downsample=c.downsample,
            res_blocks=c.vq_res_blocks, commitment=c.commitment,
        )  # fmt: skip
        self.text_encoder = TextEncoder(
            vocab_size=c.vocab_size, width=c.width, layers=c.text_layers, heads=c.heads, max_length=c.text_length,
            dropout=c.dropout,
        )  # fmt: skip
        self.tokens = TokenEmbedding(codebook_size=c.codebook_size, width=c.width, grid=c.grid)
        self.anchor = MotionAnchor(width=c.width, heads=c.heads, layers=c.anchor_layers, dropout=c.dropout)
        self.posterior = VideoPosterior(width=c.width, z_channels=c.z_channels) if c.randomness else None
        self.randomness = ImplicitRandomness(width=c.width, z_channels=c.z_channels) if c.randomness else None
        self.transformer = AxialTransformer(
            width=c.width, heads=c.heads, layers=c.layers, codebook_size=c.codebook_size, max_frames=c.max_frames,
            dropout=c.dropout,
        )  # fmt: skip

    def generator_parameters(self) -> list[nn.Parameter]:
        """Everything trained after the VQ-VAE is frozen."""
        return [p for name, p in self.named_parameters() if not name.startswith("vqvae.")]

    # ---- input checks -------------------------------------------------------------------------------------------

    def check_video(self, video: Tensor, name: str = "video") -> None:
        """Raise unless `video` is float (B, T, 3, S, S) in [0, 1] with 2 ≤ T ≤ max_frames and S = image_size."""
        s, t_max = self.config.image_size, self.config.max_frames
        if video.dim() != 5 or video.shape[2:] != (3, s, s) or not video.is_floating_point():
            raise ValueError(f"{name} must be float (B, T, 3, {s}, {s}), got {tuple(video.shape)} {video.dtype}")
        if not 2 <= video.shape[1] <= t_max:
            raise ValueError(f"{name} must have 2 to {t_max} frames, got {video.shape[1]}")
        check_range(video, name)

    def check_ids(self, ids: Tensor, text: Tensor) -> None:
        """Raise unless `ids` are int64 (B, T, grid, grid) codebook ids with B matching `text`."""
        g, k = self.config.grid, self.config.codebook_size
        if ids.dim() != 4 or ids.dtype != torch.long or ids.shape[2:] != (g, g):
            raise ValueError(f"ids must be int64 (B, T, {g}, {g}), got {tuple(ids.shape)} {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= k):
            raise ValueError(f"ids must lie in [0, {k}), got [{int(ids.min())}, {int(ids.max())}]")
        if text.shape[0] != ids.shape[0]:
            raise ValueError(f"text must have one row per clip ({ids.shape[0]}), got {text.shape[0]}")

    # ---- the pieces ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def tokenize(self, video: Tensor) -> Tensor:
        """(B, T, grid, grid) codebook ids of every frame of `video` (B, T, 3, S, S)."""
        b, t = video.shape[:2]
        return self.vqvae.encode(video.flatten(0, 1)).view(b, t, self.config.grid, self.config.grid)

    def vqvae_loss(self, video: Tensor) -> dict[str, Tensor]:
        """The VQ-VAE's loss on every frame of `video` (B, T, 3, S, S) (its first training stage)."""
        self.check_video(video)
        return self.vqvae.loss(video.flatten(0, 1))

    def sample_prior(self, batch: int, *, generator: torch.Generator | None = None) -> Tensor | None:
        """z ~ N(0, I) of shape (batch, z_channels, grid, grid), or None when randomness is off."""
        if self.randomness is None:
            return None
        g = self.config.grid
        device = self.tokens.embedding.weight.device
        return torch.randn(batch, self.config.z_channels, g, g, generator=generator, device=device)

    def motion_anchor(self, first: Tensor, text: TextFeatures, z: Tensor | None) -> Tensor:
        """The MA (B, width, grid, grid) from the first frame's features (B, grid, grid, width), the text and z."""
        anchor = self.anchor(first, text.words, text.mask)
        if self.randomness is None:
            if z is not None:
                raise ValueError("z was given but this model has randomness=False")
            return anchor
        if z is None:
            raise ValueError("z is required when randomness=True (sample_prior() draws one)")
        return self.randomness(anchor, z)

    def logits(self, ids: Tensor, text: Tensor, *, z: Tensor | None) -> Tensor:
        """(B, T, grid, grid, K) logits of frame t + 1's ids from the frames `ids` (B, T, grid, grid) up to t."""
        self.check_ids(ids, text)
        frames = self.tokens(ids)
        anchor = self.motion_anchor(frames[:, 0], self.text_encoder(text), z)
        return self.transformer(frames, anchor)

    # ---- training -----------------------------------------------------------------------------------------------

    def loss(self, video: Tensor, text: Tensor) -> dict[str, Tensor]:
        """Next-frame cross-entropy (+ β·KL with randomness) of `video` (B, T, 3, S, S) given `text` (B, L)."""
        self.check_video(video)
        return self.token_loss(self.tokenize(video), text)

    def token_loss(self, ids: Tensor, text: Tensor) -> dict[str, Tensor]:
        """`loss` on videos already tokenized by the frozen VQ-VAE: `ids` (B, T, grid, grid)."""
        # 1. check inputs
        self.check_ids(ids, text)
        if ids.shape[1] < 2:
            raise ValueError(f"ids must hold at least 2 frames, got {ids.shape[1]}")
        # 2. embed the frames and encode the text
        frames = self.tokens(ids)
        words = self.text_encoder(text)
        # 3. implicit randomness: z from the posterior over the whole real video
        kl = frames.new_zeros(())
        z = None
        if self.posterior is not None:
            mean, logvar = self.posterior(frames)
            z = sample_gaussian(mean, logvar)
            kl = kl_to_standard_normal(mean, logvar)
        # 4. motion anchor from the first frame, the words and z
        anchor = self.motion_anchor(frames[:, 0], words, z)
        # 5. predict frames 1..T-1 from frames 0..T-2 at once (causal in time)
        logits = self.transformer(frames[:, :-1], anchor)
        tokens = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        return {"loss": tokens + self.config.kl_weight * kl, "tokens": tokens.detach(), "kl": kl.detach()}

    # ---- sampling -----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        first_frame: Tensor,
        text: Tensor,
        *,
        frames: int,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        greedy: bool = False,
    ) -> Tensor:
        """A video (B, frames, 3, S, S) in [0, 1] starting from `first_frame` (B, 3, S, S) and moving as `text` says.

        The same `seed` (or an equally seeded `generator`) gives the same video. The model runs in eval mode for the
        call and returns to its previous mode afterwards.
        """
        # 1. check inputs
        s = self.config.image_size
        if first_frame.dim() != 4 or first_frame.shape[1:] != (3, s, s) or not first_frame.is_floating_point():
            raise ValueError(f"first_frame must be float (B, 3, {s}, {s}), got {tuple(first_frame.shape)}")
        check_range(first_frame, "first_frame")
        if text.dim() != 2 or text.shape[0] != first_frame.shape[0]:
            raise ValueError(f"text must be (B={first_frame.shape[0]}, L) ids, got {tuple(text.shape)}")
        if not 1 <= frames <= self.config.max_frames:
            raise ValueError(f"frames must be in [1, {self.config.max_frames}], got {frames}")
        if seed is not None and generator is not None:
            raise ValueError("give seed or generator, not both")
        if not greedy and not temperature > 0:
            raise ValueError(f"temperature must be > 0 unless greedy, got {temperature}")
        if seed is not None:
            generator = torch.Generator(device=first_frame.device).manual_seed(seed)
        was_training = self.training
        self.eval()
        try:
            # 2. tokenize the first frame, encode the text, draw z from the prior
            b = first_frame.shape[0]
            ids = self.tokenize(first_frame.unsqueeze(1))
            words = self.text_encoder(text)
            anchor = self.motion_anchor(self.tokens(ids)[:, 0], words, self.sample_prior(b, generator=generator))
            # 3. one whole frame per pass, each from the anchor and all frames so far
            for _ in range(frames - 1):
                logits = self.transformer(self.tokens(ids), anchor)[:, -1]
                ids = torch.cat([ids, self.draw(logits, generator, temperature, greedy).unsqueeze(1)], dim=1)
            # 4. decode every frame, the first included, through the VQ-VAE
            g = self.config.grid
            return self.vqvae.decode(ids.view(-1, g, g)).view(b, frames, 3, s, s)
        finally:
            self.train(was_training)

    @staticmethod
    def draw(logits: Tensor, generator: torch.Generator | None, temperature: float, greedy: bool) -> Tensor:
        """Ids (B, h, w) from logits (B, h, w, K): the argmax, or a draw at `temperature`."""
        if greedy:
            return logits.argmax(-1)
        probabilities = torch.softmax(logits.reshape(-1, logits.shape[-1]) / temperature, dim=-1)
        return torch.multinomial(probabilities, 1, generator=generator).view(logits.shape[:-1])

    # ---- files --------------------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the config (JSON) and the state dict into the directory `path`."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(self.config), indent=2), "utf-8")
        torch.save(self.state_dict(), directory / WEIGHTS_FILE)

    @classmethod
    def load(cls, path: str | Path, *, map_location: str | torch.device = "cpu") -> Mage:
        """A model saved by `save`, weights read with `weights_only=True`, in eval mode."""
        directory = Path(path)
        if not (directory / CONFIG_FILE).is_file() or not (directory / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"{directory} holds no saved MAGE ({CONFIG_FILE} and {WEIGHTS_FILE} expected)")
        config = MageConfig(**json.loads((directory / CONFIG_FILE).read_text("utf-8")))
        model = cls(config)
        model.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location=map_location, weights_only=True))
        return model.to(map_location).eval()


def check_range(x: Tensor, name: str) -> None:
    """Raise unless every value of `x` lies in [0, 1]."""
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ValueError(f"{name} must hold values in [0, 1], got [{float(x.min()):.3g}, {float(x.max()):.3g}]")
