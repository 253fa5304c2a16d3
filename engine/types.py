"""Typed inputs and outputs of the pipeline stages (frozen dataclasses, one place)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.vocabulary import Camera, Emotion, Format, Motion

Box = tuple[int, int, int, int]
"""An axis-aligned box in pixels: (x0, y0, x1, y1), x1/y1 exclusive."""


@dataclass(frozen=True)
class DecodedImage:
    """Stage 1 output: a validated RGB image at working size."""

    pixels: np.ndarray  # (H, W, 3) uint8 RGB, C-contiguous
    sha256: str  # of the input bytes
    source_format: str  # "PNG", "JPEG", ...
    source_size: tuple[int, int]  # (width, height) as stored, before orientation and resizing
    animated: bool  # the input had several frames; only the first is used

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.pixels.shape[0])


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header tells before any pixel is decoded (Intake.inspect)."""

    format: str  # "PNG", "JPEG", ... as DecodedImage.source_format names it
    width: int  # of the largest frame (for a GIF: the canvas that frame needs), as stored
    height: int
    frames: int | None  # None when only decoding would tell
    decode_bytes: int  # estimated peak memory of Intake.__call__ on it, beyond the input bytes (admission control)


@dataclass(frozen=True)
class TextLine:
    """One line of text the OCR read."""

    text: str
    box: Box
    confidence: float
    polygon: tuple[tuple[float, float], ...]  # the detector's quadrilateral, for rotated text


@dataclass(frozen=True)
class TextBlock:
    """A caption block: neighbouring lines grouped, in reading order."""

    text: str  # lines joined with "\n"
    box: Box
    confidence: float  # the lowest line confidence
    lines: tuple[TextLine, ...]


@dataclass(frozen=True)
class OcrResult:
    """Stage 2 output."""

    blocks: tuple[TextBlock, ...]
    # Lines read that belong to the picture (a chart's labels, a sign): left in it, to move with it.
    picture_text: tuple[TextLine, ...] = ()

    @property
    def text(self) -> str:
        """All caption text, blocks separated by a blank line."""
        return "\n\n".join(b.text for b in self.blocks)

    @property
    def lines(self) -> tuple[TextLine, ...]:
        """Every line of every block, in reading order."""
        return tuple(line for b in self.blocks for line in b.lines)


@dataclass(frozen=True)
class CleanImage:
    """Stage 3 output: the picture with its caption removed, and where the caption was."""

    pixels: np.ndarray  # (H, W, 3) uint8 RGB, inpainted
    text_mask: np.ndarray  # (H, W) uint8 0/255: the caption's stroke pixels (glyph and outline)
    region_mask: np.ndarray  # (H, W) uint8 0/255: the pixels that were inpainted (the strokes, grown)


@dataclass(frozen=True)
class QA:
    """One question about the picture and its answer."""

    question: str
    answer: str


@dataclass(frozen=True)
class Subject:
    """Where the picture's subject is, and what it is."""

    kind: str  # "face", "cat", "salient" or "none"
    box: Box  # the subject's box (for faces: the face)
    confidence: float


@dataclass(frozen=True)
class SceneInfo:
    """Stage 4 output: what the engine knows about the clean picture."""

    qa: tuple[QA, ...]
    subjects: tuple[Subject, ...]  # most prominent first; empty when nothing stands out
    colors: tuple[str, ...]  # dominant colour names, most common first
    panels: tuple[Box, ...]  # one box per panel; a single-panel meme has one
    meme_text: str
    panel_texts: tuple[str, ...] = ()  # the meme's text read in each panel, in panel order ("" where none)

    @property
    def subject(self) -> Subject | None:
        """The most prominent subject, if any."""
        return self.subjects[0] if self.subjects else None


@dataclass(frozen=True)
class Script:
    """Stage 5 output: the motion script."""

    description: str
    meme_text: str
    emotion: Emotion
    motion_prompt: str
    camera: Camera
    explanation: str
    # Who wrote it, for the job's history and reports: "template", "openai gpt-4o", or
    # "template (openai failed: timeout)" when the LLM failed and the template stood in.
    writer: str = "template"


@dataclass(frozen=True)
class Frames:
    """Stages 6 and 7 output: the animation, every frame the same size."""

    frames: np.ndarray  # (N, H, W, 3) uint8 RGB
    fps: float
    motion: str = ""  # the name of the motion that made them, for reports

    @property
    def count(self) -> int:
        """Number of frames."""
        return int(self.frames.shape[0])


@dataclass(frozen=True)
class Encoded:
    """Stage 8 output: the encoded animation."""

    data: bytes
    format: Format
    width: int
    height: int
    frames: int
    fps: float
    fitted: tuple[str, ...] = field(default=())  # what was given up to meet the byte budget


@dataclass(frozen=True)
class AnimationOptions:
    """What one request asks for; None means "use the configured default".

    Built only at the edges (the CLI's parser, the API's JobOptions, a stored job's options that one of
    them checked), each of which checks the values against engine.vocabulary: inside, they are trusted.
    """

    prompt: str | None = None
    motion: Motion | None = None
    camera: Camera | None = None  # None: the script chooses
    frames: int | None = None
    fps: int | None = None
    size: int | None = None  # the output's longer side, px
    format: Format | None = None
    max_bytes: int | None = None
    # Encoded instead when `format` meets max_bytes only by shrinking the picture or halving the frame rate:
    # a chat whose upload limit is small gets a sharp MP4 rather than a postage-stamp GIF.
    fallback_format: Format | None = None
    seed: int = 0
    # The LoRA file the job runs with: set by the engine from its checkpoint registry, never by a request.
    checkpoint: str | None = None


@dataclass(frozen=True)
class ResolvedOptions:
    """A request's options with the configured defaults filled in: what the stages and backends read."""

    prompt: str | None
    motion: Motion
    camera: Camera | None  # None: the script chooses
    frames: int
    fps: int
    size: int  # the output's longer side, px
    format: Format
    max_bytes: int
    fallback_format: Format | None
    seed: int
    checkpoint: str | None  # the LoRA file, from the engine's registry
