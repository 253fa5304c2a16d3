"""Benchmark: per-stage seconds and peak memory of each model backend at its default settings.

Usage: python bench/gpu.py [--tiny] [--image PATH] [--config FILE]
Each backend runs one meme twice: cold (the first job loads its models) and warm. Memory is the
peak CUDA memory allocated during each stage (torch.cuda.max_memory_allocated, reset per stage)
on a GPU; on a CPU it is the process's peak RSS so far (ru_maxrss: a high-water mark that cannot
be reset, so it only grows from stage to stage) and the table says so. The procedural backend is
the baseline measured in the same run. --tiny runs the same on the tiny random models of
`makeitmove models make-tiny` (written to a temporary folder): plumbing cost, not model cost.
Prints figures only; nothing here fails on time.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.config import Settings, load_settings, replace  # noqa: E402
from engine.errors import ConfigError  # noqa: E402
from engine.pipeline import STAGES, Pipeline  # noqa: E402
from engine.types import AnimationOptions  # noqa: E402

MEME = REPO / "examples" / "monday-cat.png"
# (label, caption backend, generate backend, i2v model key in the tiny folder or None)
BACKENDS = (
    ("procedural (baseline)", "none", "procedural", None),
    ("blip2 + t2v", "blip2", "t2v", None),
    ("florence2 + i2v LTX", "florence2", "i2v", "ltx"),
    ("blip2 + i2v Wan", "blip2", "i2v", "wan"),
)


class MemoryProbe:
    """Peak memory per stage: CUDA allocations when torch uses a GPU, else the process's peak RSS."""

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        self.unit = "peak VRAM MB" if self.cuda else "peak RSS MB (process, so far)"

    def reset(self) -> None:
        """Start a stage's window (CUDA only: ru_maxrss cannot be reset)."""
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()

    def peak_mb(self) -> float:
        """The window's peak in MB."""
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def settings_for(base: Settings, caption: str, generate: str, i2v: str | None, tiny: Path | None) -> Settings:
    """The base settings with one backend pair selected (on the tiny models under `tiny` when given)."""
    sections: dict[str, dict[str, Any]] = {"caption": {"backend": caption}, "generate": {"backend": generate}}
    if tiny is not None and caption != "none":
        sections["caption"][f"{caption}_model"] = str(tiny / caption)
    if tiny is not None and i2v is not None:
        sections["generate"]["i2v_model"] = str(tiny / i2v)
    elif i2v == "wan":
        sections["generate"]["i2v_model"] = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    return replace(base, **sections)


class StageRecorder:
    """A progress callback that closes a stage's memory window when the next stage starts."""

    def __init__(self, probe: MemoryProbe) -> None:
        self.probe = probe
        self.stage = ""
        self.peaks: dict[str, float] = {}

    def __call__(self, stage: str, _fraction: float) -> None:
        if stage == self.stage:  # generate reports every denoising step; only stage changes matter
            return
        if self.stage:
            self.peaks[self.stage] = self.probe.peak_mb()
        self.probe.reset()
        self.stage = stage


def measure(settings: Settings, data: bytes, probe: MemoryProbe) -> list[tuple[dict[str, float], dict[str, float]]]:
    """Two runs (cold, warm): seconds per stage and the memory peak of each stage."""
    pipeline = Pipeline(settings)
    runs = []
    for _ in range(2):
        recorder = StageRecorder(probe)
        result = pipeline.run(data, AnimationOptions(seed=0), progress=recorder)
        runs.append((dict(result.timings), recorder.peaks))
    return runs


def table(rows: list[tuple[str, list[tuple[dict[str, float], dict[str, float]]]]], unit: str) -> str:
    """One row per backend and stage: cold and warm seconds, memory, and warm total against the baseline."""
    lines = [f"{'backend':<24}{'stage':<12}{'cold s':>9}{'warm s':>9}  {unit}"]
    baseline = rows[0][1][1][0]["total"] if rows else 0.0
    for label, runs in rows:
        (cold, _), (warm, peaks) = runs
        for stage in (*STAGES, "total"):
            memory = f"{peaks[stage]:.0f}" if stage in peaks else ""
            ratio = f"   x{warm['total'] / baseline:.1f} baseline" if stage == "total" and baseline else ""
            lines.append(f"{label:<24}{stage:<12}{cold[stage]:>9.3f}{warm[stage]:>9.3f}  {memory}{ratio}")
        label = ""
    return "\n".join(lines)


def main() -> None:
    """Run every backend pair and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="use tiny random models built in a temporary folder")
    parser.add_argument("--image", type=Path, default=MEME, help="the meme (default: examples/monday-cat.png)")
    parser.add_argument("--config", type=Path, help="a config.toml overriding the defaults (not with --tiny)")
    args = parser.parse_args()

    import torch

    torch.manual_seed(0)
    data = args.image.read_bytes()
    probe = MemoryProbe()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        tiny: Path | None = None
        base = load_settings(args.config)
        if args.tiny:
            from engine.runtime.tiny import make_tiny

            started = time.perf_counter()
            tiny = Path(scratch)
            make_tiny(tiny)
            print(f"tiny models built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            base = load_settings(tiny / "tiny.toml")
        for label, caption, generate, i2v in BACKENDS:
            settings = settings_for(base, caption, generate, i2v, tiny)
            try:
                rows.append((label, measure(settings, data, probe)))
            except ConfigError as exc:  # a model that is not on this machine: say so and go on
                print(f"{label}: skipped: {exc}", file=sys.stderr)
    device = "cuda" if probe.cuda else f"cpu, {torch.get_num_threads()} threads"
    print(f"{args.image.name}, {base.generate.frames} frames, {base.encode.size} px, on {device}")
    print(table(rows, probe.unit))


if __name__ == "__main__":
    main()
