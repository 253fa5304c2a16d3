"""VideoGAN's two streams, conditioned on the text and the stage-I image, and the video discriminator with two heads.

Vondrick et al. 2016: a static background b from a 2D net, a moving foreground f and a mask m from 3D transposed
convolutions, composed as m·f + (1 − m)·b, with a small L1 penalty on m. Here the 2D net refines the stage-I image
into the background and the 3D stream starts from the same image's 4×4 features, so both know what the image shows.
The critic has a real/fake head and, when `text_match` is on, a matching head trained like StackGAN's image critic:
the blog's conclusion was that its video loss lacked exactly this term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from research.tgan.image import batch_spread, group_norm, upsamplings, widths


@dataclass(frozen=True)
class VideoOutput:
    """The composed video and the parts it is made of, all in [-1, 1] except the mask in [0, 1]."""

    video: Tensor  # (B, T, 3, H, W) = mask·foreground + (1 − mask)·background
    foreground: Tensor  # (B, T, 3, H, W)
    mask: Tensor  # (B, T, 1, H, W)
    background: Tensor  # (B, 3, H, W): one image per clip, the same on every frame


def time_strides(frames: int, steps: int) -> list[int]:
    """Per upsampling step, 2 where time doubles and 1 where it does not: the doublings come last."""
    doublings = 0
    while doublings < steps and frames % 2 ** (doublings + 1) == 0:
        doublings += 1
    return [1] * (steps - doublings) + [2] * doublings


class VideoGenerator(nn.Module):
    """Image (B, 3, H, W), condition c and motion noise z to a `VideoOutput` of `frames` frames."""

    def __init__(self, *, cond_dim: int, noise_dim: int, size: int, frames: int, width: int) -> None:
        super().__init__()
        steps = upsamplings(size)
        channels = widths(width, steps)
        strides = time_strides(frames, steps)
        self.frames, self.start_frames = frames, frames // 2 ** strides.count(2)
        top = channels[0]
        # 1. the image encoder both streams start from: full size down to top × 4 × 4
        encoder: list[nn.Module] = []
        downs = channels[::-1][1:]
        for c_in, c_out in zip([3, *downs], downs):
            encoder += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False), group_norm(c_out), nn.ReLU()]
        self.encoder = nn.Sequential(*encoder)
        # 2. the background stream: 2D, image features and c back up to a refined image
        background: list[nn.Module] = []
        for c_in, c_out in zip([top + cond_dim, *channels[1:-1]], channels[1:]):
            background += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), group_norm(c_out), nn.ReLU()]
        self.background = nn.Sequential(*background)
        self.background_rgb = nn.Conv2d(channels[-1] + 3, 3, 3, padding=1)  # sees the image itself, to keep or fix it
        # 3. the foreground stream: 3D, [c, z] and the image features to T frames of foreground and mask
        self.latent = nn.Sequential(
            nn.Linear(cond_dim + noise_dim, top * self.start_frames * 16, bias=False),
            nn.Unflatten(1, (top, self.start_frames, 4, 4)),
            group_norm(top),
            nn.ReLU(),
        )
        foreground: list[nn.Module] = []
        for c_in, c_out, stride in zip([2 * top, *channels[1:-1]], channels[1:-1], strides):
            foreground += [self.up3d(c_in, c_out, stride, bias=False), group_norm(c_out), nn.ReLU()]
        # the last layer gives 3 foreground channels and 1 mask channel; the mask starts mostly shut
        # (sigmoid(−2) ≈ 0.12), so early videos are the refined image and motion has to be earned
        moving = self.up3d(channels[-2] if steps > 1 else 2 * top, 4, strides[-1], bias=True)
        bias = torch.zeros(4)
        bias[3] = -2.0
        moving.bias = nn.Parameter(bias)
        self.foreground = nn.Sequential(*foreground, moving)

    @staticmethod
    def up3d(c_in: int, c_out: int, time_stride: int, *, bias: bool) -> nn.ConvTranspose3d:
        """A transposed 3D convolution doubling height and width, and time when `time_stride` is 2."""
        kernel = (4, 4, 4) if time_stride == 2 else (3, 4, 4)
        return nn.ConvTranspose3d(c_in, c_out, kernel, (time_stride, 2, 2), 1, bias=bias)

    def forward(self, image: Tensor, condition: Tensor, noise: Tensor) -> VideoOutput:
        """The video that sets the image in motion as the condition and the noise say."""
        # 1. encode the image to 4×4 features
        features = self.encoder(image)
        # 2. background: refine the image, the same on every frame
        spread = condition[:, :, None, None].expand(-1, -1, *features.shape[2:])
        refined = self.background(torch.cat([features, spread], dim=1))
        background = torch.tanh(self.background_rgb(torch.cat([refined, image], dim=1)))
        # 3. foreground and mask from [c, z] beside the image features, (B, C, T, H, W) as 3D convolutions want
        latent = self.latent(torch.cat([condition, noise], dim=1))
        still = features.unsqueeze(2).expand(-1, -1, self.start_frames, -1, -1)
        moving = self.foreground(torch.cat([latent, still], dim=1)).transpose(1, 2)
        foreground, mask = torch.tanh(moving[:, :, :3]), torch.sigmoid(moving[:, :, 3:])
        # 4. compose
        video = mask * foreground + (1 - mask) * background.unsqueeze(1)
        return VideoOutput(video=video, foreground=foreground, mask=mask, background=background)


class VideoDiscriminator(nn.Module):
    """3D-conv critic of videos (B, T, 3, H, W) in [-1, 1]: a real/fake head and, optionally, a text-matching head."""

    def __init__(self, *, size: int, frames: int, width: int, text_dim: int, code_dim: int, text_match: bool) -> None:
        super().__init__()
        steps = upsamplings(size)
        channels = widths(width, steps)[:0:-1]  # one per halving, from full size down to 4×4
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip([3, *channels], channels, time_strides(frames, steps)[::-1]):
            kernel = (4, 4, 4) if stride == 2 else (3, 4, 4)
            layers += [nn.Conv3d(c_in, c_out, kernel, (stride, 2, 2), 1), nn.LeakyReLU(0.2)]
        self.trunk = nn.Sequential(*layers)
        end = (frames // 2 ** time_strides(frames, steps).count(2), 4, 4)
        self.real_fake = nn.Conv3d(channels[-1] + 1, 1, end)
        self.text_match = text_match
        if text_match:
            self.code = nn.Sequential(nn.Linear(text_dim, code_dim), nn.LeakyReLU(0.2))
            self.joint = nn.Sequential(
                nn.Conv3d(channels[-1] + 1 + code_dim, channels[-1], 1),
                nn.LeakyReLU(0.2),
                nn.Conv3d(channels[-1], 1, end),
            )

    def features(self, video: Tensor) -> Tensor:
        """The video's (C + 1, t, 4, 4) feature map with the batch's spread, computed once and scored by both heads."""
        return batch_spread(self.trunk(video.transpose(1, 2)))

    def real(self, features: Tensor) -> Tensor:
        """Logits (B,) that the videos behind `features` are real, whatever they show."""
        return self.real_fake(features).flatten()

    def match(self, features: Tensor, embedding: Tensor) -> Tensor:
        """Logits (B,) that the videos behind `features` are real and show the texts behind `embedding`."""
        if not self.text_match:
            raise RuntimeError("this video discriminator was built with text_match=False and has no matching head")
        code = self.code(embedding)[:, :, None, None, None].expand(-1, -1, *features.shape[2:])
        return self.joint(torch.cat([features, code], dim=1)).flatten()
