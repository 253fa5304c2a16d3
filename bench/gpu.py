"""Benchmark: per-stage seconds and peak memory of each model backend at its default settings.

Usage: python bench/gpu.py [--tiny] [--image PATH] [--config FILE]
Each backend runs one meme twice: cold (the first job loads its models) and warm. Memory is the
peak CUDA memory allocated during each stage (torch.cuda.max_memory_allocated, reset per stage)
on a GPU; on a CPU it is the process's peak RSS during the stage (VmHWM, reset per stage through
/proc/self/clear_refs) where Linux allows that, else its peak RSS so far (ru_maxrss: a high-water
mark that only grows from stage to stage) and the table says which. The procedural backend is the
baseline measured in the same run. --tiny runs the same on the tiny random models of
`makeitmove models make-tiny` (written to a temporary folder): plumbing cost, not model cost.
The clipguided backend then runs once per preset at 224 px and at the output size, with seconds per
frame and per Adam step and CLIP's similarity of each frame to its prompts; on a CPU, an estimate of
what ViT-B/32 would cost there follows (FLOPs, and one step's CLIP work timed on a randomly
initialised B/32 vision tower). Prints figures only; nothing here fails on time.
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
    ("clipguided", "none", "clipguided", None),
)
CLIP_INPUT = 224  # CLIP's own input side: the clipguided canvas is measured at this and at the output size


class MemoryProbe:
    """Peak memory per stage: CUDA allocations when torch uses a GPU, else the process's peak RSS."""

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        self.resettable = not self.cuda and reset_rss_peak()
        if self.cuda:
            self.unit = "peak VRAM MB"
        else:
            self.unit = "peak RSS MB" if self.resettable else "peak RSS MB (process, so far)"

    def reset(self) -> None:
        """Start a stage's window (not on a CPU where the RSS peak cannot be reset)."""
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        elif self.resettable:
            reset_rss_peak()

    def peak_mb(self) -> float:
        """The window's peak in MB."""
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        if self.resettable:
            status = Path("/proc/self/status").read_text("ascii")
            return int(status.split("VmHWM:")[1].split()[0]) / 1024  # kB
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_rss_peak() -> bool:
    """Reset the process's RSS high-water mark (VmHWM); False where Linux does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS (Linux 4.0+)
        return "VmHWM:" in Path("/proc/self/status").read_text("ascii")
    except OSError:
        return False


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


Runs = list[tuple[dict[str, float], dict[str, float]]]


def measure(pipeline: Pipeline, data: bytes, probe: MemoryProbe) -> Runs:
    """Two runs (cold, warm): seconds per stage and the memory peak of each stage."""
    runs = []
    for _ in range(2):
        recorder = StageRecorder(probe)
        result = pipeline.run(data, AnimationOptions(seed=0), progress=recorder)
        runs.append((dict(result.timings), recorder.peaks))
    return runs


def table(rows: list[tuple[str, Runs]], unit: str) -> str:
    """One row per backend and stage: cold and warm seconds, memory, and warm total against the baseline."""
    lines = [f"{'backend':<24}{'stage':<12}{'cold s':>9}{'warm s':>9}  {unit}"]
    baseline = rows[0][1][1][0]["total"] if rows else 0.0
    for label, runs in rows:
        (cold, _), (warm, peaks) = runs
        for stage in (*STAGES, "total"):
            memory = f"{peaks[stage]:.0f}" if stage in peaks else ""
            ratio = f"   x{warm['total'] / baseline:.1f} baseline" if stage == "total" and baseline else ""
            lines.append(f"{label:<24}{stage:<12}{cold[stage]:>9.3f}{warm[stage]:>9.3f}  {memory}{ratio}")
            label = ""  # the backend's name on its first row only
    return "\n".join(lines)


def clipguided_sweep(base: Settings, data: bytes, probe: MemoryProbe, tiny: bool) -> list[str]:
    """The clipguided backend per preset at CLIP_INPUT and at the output size, and its similarities over time."""
    from engine.backends.clipguided.schedule import PRESETS

    model = "the tiny random CLIP: mechanics, not model cost" if tiny else base.generate.clip_model
    lines = [
        f"clipguided on {model}; seconds of the generate stage, warm",
        f"{'preset':<9}{'canvas':>9}{'steps':>7}{'cold s':>9}{'warm s':>9}{'s/frame':>9}{'s/step':>9}  {probe.unit}",
    ]
    first = None
    for preset in PRESETS:
        for side in dict.fromkeys((CLIP_INPUT, base.encode.size)):
            settings = replace(
                base, caption={"backend": "none"},
                generate={"backend": "clipguided", "clip_preset": preset, "clip_side": side},
            )  # fmt: skip
            pipeline = Pipeline(settings)
            (cold, _), (warm, peaks) = measure(pipeline, data, probe)
            report = pipeline.generate.backend.last_report  # type: ignore[attr-defined]
            optimising = sum(frame.seconds for frame in report.frames)
            canvas = "x".join(map(str, report.canvas))
            lines.append(
                f"{preset:<9}{canvas:>9}{report.iterations:>7}{cold['generate']:>9.2f}{warm['generate']:>9.2f}"
                f"{warm['generate'] / len(report.frames):>9.3f}{optimising / report.iterations:>9.4f}"
                f"  {peaks.get('generate', 0.0):.0f}"
            )
            first = first or (preset, canvas, report)
    if first is not None:
        lines += ["", *similarity_lines(*first, tiny=tiny)]
    return lines


def similarity_lines(preset: str, canvas: str, report: Any, *, tiny: bool) -> list[str]:
    """CLIP's similarity of each frame to the prompts pulling on it, against the un-optimised meme's."""
    caveat = " (the tiny CLIP is random: this proves the mechanics, not that frames match their prompts)"
    lines = [f"CLIP similarity over time, {preset} preset at {canvas}{caveat if tiny else ''}"]
    lines += [f'  p{i}: "{prompt}"' for i, prompt in enumerate(report.prompts)]
    lines.append("  the meme itself: " + "  ".join(f"p{i} {s:+.3f}" for i, s in enumerate(report.meme_similarity)))
    head = f"  {'frame':<7}{'pull (now / next)':<22}{'sim now':>9}{'vs meme':>9}{'sim next':>10}"
    lines.append(head + f"{'loss first -> last':>22}")
    for index, frame in enumerate(report.frames):
        pull = f"p{frame.now} {frame.w_now:.2f} / p{frame.next} {frame.w_next:.2f}"
        gain = frame.similarity_now - report.meme_similarity[frame.now]
        sims = f"{frame.similarity_now:>+9.3f}{gain:>+9.3f}{frame.similarity_next:>+10.3f}"
        lines.append(f"  {index:<7}{pull:<22}{sims}{f'{frame.first_loss:+.3f} -> {frame.last_loss:+.3f}':>22}")
    return lines


def vit_macs(config: Any) -> float:
    """Multiply-accumulates of one forward pass of a CLIP ViT on one image (patch embedding, layers, projection)."""
    patches = (config.image_size // config.patch_size) ** 2
    tokens, width = patches + 1, config.hidden_size
    embed = 3 * config.patch_size**2 * width * patches
    per_layer = tokens * (4 * width * width + 2 * width * config.intermediate_size) + 2 * tokens * tokens * width
    return embed + config.num_hidden_layers * per_layer + width * config.projection_dim


def b32_estimate(frames: int) -> list[str]:
    """What ViT-B/32 would cost on this CPU: FLOPs per step, and one step's CLIP work timed on a random B/32 tower."""
    try:
        from engine.backends.clipguided.schedule import PRESETS
    except ImportError:
        return ["B/32 estimate: skipped: engine.backends.clipguided.schedule (its presets) is not here."]
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config: Any = CLIPVisionConfig()  # its defaults are ViT-B/32's: 768 wide, 12 layers, 224 px in 32 px patches
    macs = vit_macs(config)
    lines = [
        "ESTIMATE for ViT-B/32 on this CPU, not a run of the backend:",
        f"  one forward of a 224 px crop is {macs / 1e9:.2f} GMACs = {2 * macs / 1e9:.1f} GFLOPs; a step runs K crops"
        " forward and backward to the pixels,",
        "  about 2x the forward (CLIP's weights are frozen, so no weight gradients; 3x if they were not);",
        "  the seconds are one step's CLIP work timed on a randomly initialised B/32 vision tower (the cost does not"
        " depend on the weights),",
        "  best of 3 after a warm-up, without the augmentation, Adam and the text tower: a lower bound. CLIP sees"
        " 224 px crops at any canvas side.",
    ]
    torch.manual_seed(0)
    tower = CLIPVisionModelWithProjection(config).eval().requires_grad_(False)
    for name, preset in PRESETS.items():
        step = step_seconds(tower, preset.crops, config.image_size)
        steps = preset.first_iterations + (frames - 1) * preset.iterations
        lines.append(
            f"  {name:<8} K={preset.crops}: {2 * 2 * macs * preset.crops / 1e9:.0f} GFLOPs/step, "
            f"{2 * 2 * macs * preset.crops * preset.iterations / 1e12:.2f} TFLOPs/frame ({preset.iterations} steps); "
            f"~{step:.2f} s/step, ~{step * preset.iterations:.1f} s/frame, ~{step * steps / 60:.1f} min "
            f"for {frames} frames ({steps} steps)"
        )
    return lines


def step_seconds(tower: Any, crops: int, side: int) -> float:
    """Seconds for one forward and backward (to the pixels) of `crops` images through the vision tower."""
    import torch

    def once() -> float:
        pixels = torch.rand(crops, 3, side, side, requires_grad=True)
        started = time.perf_counter()
        tower(pixel_values=pixels).image_embeds.sum().backward()
        return time.perf_counter() - started

    once()
    return min(once() for _ in range(3))


def main() -> None:
    """Run every backend pair and print the table, then the clipguided sweep and the B/32 estimate."""
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
    clip_lines: list[str] = []
    # B/32 on a CPU takes seconds per step (see the estimate): minutes to hours per job
    clip_runs = probe.cuda or args.tiny
    cpu_only = "on a CPU it needs --tiny (the tiny CLIP); B/32 here: see the estimate below"
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
            if generate == "clipguided" and not clip_runs:
                print(f"{label}: skipped: {cpu_only}", file=sys.stderr)
                continue
            settings = settings_for(base, caption, generate, i2v, tiny)
            try:
                rows.append((label, measure(Pipeline(settings), data, probe)))
            except ConfigError as exc:  # a model that is not on this machine: say so and go on
                print(f"{label}: skipped: {exc}", file=sys.stderr)
        if clip_runs:
            try:
                clip_lines = clipguided_sweep(base, data, probe, tiny=args.tiny)
            except ConfigError as exc:
                clip_lines = [f"clipguided presets: skipped: {exc}"]
        else:
            clip_lines = [f"clipguided presets: skipped: {cpu_only}"]
    device = "cuda" if probe.cuda else f"cpu, {torch.get_num_threads()} threads"
    print(f"{args.image.name}, {base.generate.frames} frames, {base.encode.size} px, on {device}")
    print(table(rows, probe.unit))
    print("\n" + "\n".join(clip_lines))
    if not probe.cuda:
        print("\n" + "\n".join(b32_estimate(load_settings(args.config).generate.frames)))


if __name__ == "__main__":
    main()
