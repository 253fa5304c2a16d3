"""Benchmark: LoRA training of each model family at its default [training] settings (seconds per step, memory).

Usage: python bench/train.py [--tiny] [--steps N] [--config FILE] [--out PNG]
Each family (t2v, ltx, wan) trains on the same synthetic dataset (moving stripes, at the family's frame
bucket and size multiple) for N steps at the configured rank, learning rate, frames and side; the latent and
text cache starts empty, so "total s" includes encoding. Seconds per step is the median step; t2v is the
baseline measured in the same run. Memory is the peak CUDA memory allocated on a GPU, and on a CPU the
process's peak RSS so far (ru_maxrss cannot be reset, so it only grows from family to family). The loss
curves go to one PNG (matplotlib when installed, else drawn with Pillow). --tiny runs the tiny random
models of `makeitmove models make-tiny` in a temporary folder: plumbing cost, not model cost. Without a GPU
and without --tiny it says so and stops. Prints figures only; nothing here fails on time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.config import Settings, load_settings, replace  # noqa: E402
from engine.errors import ConfigError, UserError  # noqa: E402

CLIPS = 4
# family -> (--base, the i2v model used when the configured one is of the other family)
FAMILIES = {"t2v": ("t2v", ""), "ltx": ("i2v", "Lightricks/LTX-Video-0.9.7-distilled"),
            "wan": ("i2v", "Wan-AI/Wan2.2-TI2V-5B-Diffusers")}  # fmt: skip
FRAME_STEP = {"t2v": 1, "ltx": 8, "wan": 4}  # frames are step*k + 1 (t2v: any count)
SIDE_MULTIPLE = {"t2v": 8, "ltx": 32, "wan": 32}
COLOURS = {"t2v": (31, 119, 180), "ltx": (255, 127, 14), "wan": (44, 160, 44)}


def peak_mb(cuda: bool) -> float:
    """Peak CUDA memory allocated since the last reset, or the process's peak RSS, in MB."""
    if cuda:
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def write_dataset(folder: Path, family: str, frames: int, side: int) -> Path:
    """CLIPS synthetic clips (stripes drifting at different speeds) in the dataset builder's folder format."""
    import numpy as np

    count = frames if FRAME_STEP[family] == 1 else FRAME_STEP[family] * math.ceil((frames - 1) / FRAME_STEP[family]) + 1
    side = max(SIDE_MULTIPLE[family], SIDE_MULTIPLE[family] * round(side / SIDE_MULTIPLE[family]))
    (folder / "clips").mkdir(parents=True)
    y, x = np.mgrid[:side, :side]
    rows, files = [], {}
    for i in range(CLIPS):
        clip = np.stack([
            np.stack([(x * 3 + t * (6 + 4 * i)) % 256, (y * 2 + t * 3 * i) % 256, np.full_like(x, 60 * i)], -1)
            for t in range(count)
        ]).astype(np.uint8)  # fmt: skip
        name = f"clips/{i:012x}.npy"
        np.save(folder / name, clip)
        files[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        rows.append({"id": f"{i:012x}", "clip": name, "caption": f"stripes drifting at speed {i}", "fps": 8,
                     "frames": count, "width": side, "height": side, "family": family})  # fmt: skip
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), "utf-8")
    digest = hashlib.sha256("".join(f"{p} {h}\n" for p, h in sorted(files.items())).encode()).hexdigest()
    manifest = {"version": 1, "family": family, "fps": 8, "frames": count, "side": side, "trigger": "",
                "files": files, "dataset_sha256": digest}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest, sort_keys=True), "utf-8")
    return folder


def settings_for(base: Settings, family: str, tiny: Path | None, scratch: Path) -> Settings:
    """The base settings training `family`, with its work dir in the scratch folder."""
    generate: dict[str, Any] = {}
    if tiny is not None and family != "t2v":
        generate["i2v_model"] = str(tiny / family)
    elif family != "t2v" and _configured_family(base) != family:
        generate["i2v_model"] = FAMILIES[family][1]
    return replace(base, generate=generate, training={"work_dir": str(scratch / "work")})


def _configured_family(settings: Settings) -> str:
    """The family of the configured i2v model ("" when it isn't on this machine)."""
    from engine.backends.video.i2v import family_of
    from engine.runtime.gpu import model_path

    try:
        return family_of(
            model_path(settings.generate.i2v_model, key="generate.i2v_model"), settings.generate.i2v_family
        )
    except ConfigError:
        return ""


def measure(settings: Settings, family: str, steps: int, scratch: Path, cuda: bool) -> dict[str, Any]:
    """Train `family` for `steps` steps on a fresh dataset and cache; its figures."""
    import torch

    from engine.training.trainer import TrainSpec, train

    t = settings.training
    dataset = write_dataset(scratch / f"dataset-{family}", family, t.frames, t.side)
    spec = TrainSpec.from_settings(
        settings, dataset, f"bench-{family}", base=FAMILIES[family][0], steps=steps, checkpoint_every=steps
    )  # fmt: skip
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = train(spec, settings, registry_dir=scratch / "registry")
    manifest = json.loads((dataset / "manifest.json").read_text("utf-8"))
    return {
        "family": family, "size": f"{manifest['frames']}x{manifest['side']}px", "rank": spec.rank,
        "step": result.seconds_per_step, "total": time.perf_counter() - started, "peak": peak_mb(cuda),
        "losses": result.losses,
    }  # fmt: skip


def table(rows: list[dict[str, Any]], unit: str) -> str:
    """One row per family: frames x side, rank, s/step against the baseline, memory, the loss then and now."""
    header = f"{'family':<8}{'clip':>10}{'rank':>6}{'s/step':>10}{'vs t2v':>9}{'total s':>9}  {unit:<30}"
    lines = [header + "loss first -> last 10"]
    baseline = next((r["step"] for r in rows if r["family"] == "t2v"), 0.0)
    for r in rows:
        ratio = f"x{r['step'] / baseline:.2f}" if baseline else "-"
        last = sum(r["losses"][-10:]) / len(r["losses"][-10:])
        lines.append(
            f"{r['family']:<8}{r['size']:>10}{r['rank']:>6}{r['step']:>10.4f}{ratio:>9}{r['total']:>9.1f}  "
            f"{r['peak']:<30.0f}{r['losses'][0]:.4f} -> {last:.4f}"
        )  # fmt: skip
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> str:
    """The loss curves as one PNG; returns what drew it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        _plot_with_pillow(rows, path)
        return "Pillow (pip install matplotlib for a finer plot)"
    figure, axes = pyplot.subplots(figsize=(8, 4.5))
    for r in rows:
        axes.plot(
            range(1, len(r["losses"]) + 1),
            r["losses"],
            label=r["family"],
            color=[c / 255 for c in COLOURS[r["family"]]],
        )
    axes.set(xlabel="step", ylabel="loss", title="LoRA training loss per step")
    axes.legend()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    pyplot.close(figure)
    return "matplotlib"


def _plot_with_pillow(rows: list[dict[str, Any]], path: Path) -> None:
    from PIL import Image, ImageDraw

    width, height, margin = 800, 450, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    values = [v for r in rows for v in r["losses"]]
    low, high = min(values), max(values)
    longest = max(len(r["losses"]) for r in rows)
    draw.rectangle((margin, margin, width - margin, height - margin), outline="black")
    draw.text((margin, 15), f"LoRA training loss per step ({low:.3f} .. {high:.3f})", fill="black")
    for n, r in enumerate(rows):
        points = [
            (margin + (width - 2 * margin) * i / max(1, longest - 1),
             height - margin - (height - 2 * margin) * (v - low) / ((high - low) or 1.0))
            for i, v in enumerate(r["losses"])
        ]  # fmt: skip
        if len(points) > 1:
            draw.line(points, fill=COLOURS[r["family"]], width=2)
        draw.text((width - margin - 60, margin + 10 + 15 * n), r["family"], fill=COLOURS[r["family"]])
    image.save(path)


def main() -> None:
    """Train every family and print the table; write the loss curves."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="use tiny random models built in a temporary folder")
    parser.add_argument("--steps", type=int, default=50, help="training steps per family (default 50)")
    parser.add_argument("--config", type=Path, help="a config.toml overriding the defaults (not with --tiny)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "train-loss.png", help="the loss curves' PNG")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit(
            "training needs torch: pip install 'makeitmove[gpu]' (or run the tests' extra: pip install -e '.[test]')"
        )
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        sys.exit(
            "no CUDA GPU here: the real models would take hours per step on a CPU. Run with --tiny for the tiny models."
        )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        tiny: Path | None = None
        base = load_settings(args.config)
        if args.tiny:
            from engine.runtime.tiny import make_tiny

            started = time.perf_counter()
            tiny = scratch / "tiny"
            make_tiny(tiny)
            print(f"tiny models built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            base = load_settings(tiny / "tiny.toml")
        for family in FAMILIES:
            try:
                rows.append(measure(settings_for(base, family, tiny, scratch), family, args.steps, scratch, cuda))
            except (ConfigError, UserError) as exc:  # a model that is not on this machine: say so and go on
                print(f"{family}: skipped: {exc}", file=sys.stderr)
    device = "cuda" if cuda else f"cpu, {torch.get_num_threads()} threads"
    unit = "peak VRAM MB" if cuda else "peak RSS MB (process, so far)"
    print(f"{args.steps} steps per family, {CLIPS} clips, on {device}{' (tiny models)' if args.tiny else ''}")
    print(table(rows, unit))
    if rows:
        print(f"loss curves: {args.out} (drawn with {plot(rows, args.out)})")


if __name__ == "__main__":
    main()
