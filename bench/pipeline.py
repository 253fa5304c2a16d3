"""Benchmark: per-stage and end-to-end seconds on the real memes, and the CLI's cold start.

Usage: python bench/pipeline.py [--memes DIR] [--limit N] [--runs N]
Prints figures only; nothing here fails on time. Targets on a 2-core CPU: end-to-end median
≤ 1.5 s for a 48-frame, 480 px GIF; CLI cold start ≤ 1 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.figures import percentile  # noqa: E402
from engine.config import load_settings  # noqa: E402
from engine.pipeline import STAGES, Pipeline  # noqa: E402
from engine.types import AnimationOptions  # noqa: E402


def cold_start(runs: int) -> dict[str, float]:
    """Wall seconds of fresh processes: `makeitmove --help`, and importing the whole pipeline."""
    exe = shutil.which("makeitmove")
    probes = {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "import engine.pipeline": [sys.executable, "-c", "import engine.pipeline"],
    }
    if exe:
        probes["makeitmove --help"] = [exe, "--help"]
    figures = {}
    for name, command in probes.items():
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=REPO)
            times.append(time.perf_counter() - t0)
        figures[name] = statistics.median(times)
    return figures


def first_job(image: Path) -> float:
    """Wall seconds of a fresh `makeitmove animate` process on one meme (imports, model load, job)."""
    exe = shutil.which("makeitmove") or sys.exit("install the package first: pip install -e .")
    t0 = time.perf_counter()
    subprocess.run([exe, "animate", str(image), "-o", "/dev/null", "--format", "gif"], check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memes", type=Path, default=REPO.parent / "shared" / "memes")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--runs", type=int, default=5, help="repeats for the cold-start probes")
    args = parser.parse_args()
    truth = args.memes / "ground_truth.json"
    if not truth.is_file():
        sys.exit(f"the real meme set is not at {args.memes}; pass --memes DIR")
    memes = json.loads(truth.read_text())["memes"][: args.limit]

    pipeline = Pipeline(load_settings())
    options = AnimationOptions(frames=48, size=480, format="gif")
    warm = (args.memes / memes[0]["image"]).read_bytes()
    pipeline.run(warm, options)  # load the OCR models once, as a running engine would have

    per_stage: dict[str, list[float]] = {name: [] for name in (*STAGES, "total")}
    sizes = []
    for meme in memes:
        result = pipeline.run((args.memes / meme["image"]).read_bytes(), options)
        for name in per_stage:
            per_stage[name].append(result.timings[name])
        sizes.append(len(result.encoded.data))

    print(f"Pipeline on {len(memes)} real memes, 48 frames, 480 px GIF, warm engine (seconds)")
    print(f"{'stage':<12} {'median':>8} {'p95':>8}")
    for name, values in per_stage.items():
        print(f"{name:<12} {statistics.median(values):8.3f} {percentile(values, 95):8.3f}")
    print(f"GIF size: median {statistics.median(sizes) / 1e6:.2f} MB, max {max(sizes) / 1e6:.2f} MB")
    print()
    print(f"Cold start (fresh process, median of {args.runs}, seconds)")
    for name, seconds in cold_start(args.runs).items():
        print(f"{name:<28} {seconds:6.3f}")
    print(f"{'first job, fresh process':<28} {first_job(args.memes / memes[0]['image']):6.3f}")


if __name__ == "__main__":
    main()
