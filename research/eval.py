"""python -m research.eval [--quick]: MAGE, the text-to-video GAN and a copy-the-first-frame baseline, one run.

Reads the models bench/research.py trained (research/runs/), generates from the test splits, and measures:
- reconstruction (PSNR, SSIM against the ground truth) where the text is explicit and the model sees frame one;
- control accuracy: a probe trained on the generators' ground truth reads where each object goes in a generated
  video, and the reading is checked against the text (a digit's motion label; a CATER object's target place);
- diversity for vague CATER texts: several samples per input, their mean pairwise L1 distance, and the share of
  samples still consistent with the text; for the GAN, the same distance between two noise draws per text and
  between neighbouring texts' videos (`across_texts`), where a collapsed GAN is near 0;
- a Fréchet distance (FID-like) between real and generated test clips, on features of a motion classifier
  trained here (no pretrained video network can be downloaded).
Writes research/results/results.json, results.md and GIF grids.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from research import experiments as ex
from research.data import cater, digits
from research.data.render import COLOURS
from research.figures import contact_sheet, grid_gif
from research.metrics import control_accuracy, copy_first_frame, diversity, frechet_distance, psnr, ssim
from research.probes import ConditionedProbe, TrajectoryProbe, VideoFeatures, label_ids

BATCH = 16
CEILING = "real test clips (the probe's ceiling)"


def mage_videos(run: Path, first: np.ndarray, texts: np.ndarray, frames: int, seed: int) -> np.ndarray:
    """MAGE's videos from first frames (N, 3, H, W) and texts, `seed` for its randomness."""
    from research.mage.model import Mage

    model = Mage.load(run)
    out = [
        model.generate(
            torch.from_numpy(first[i : i + BATCH]), torch.from_numpy(texts[i : i + BATCH]), frames=frames, seed=seed + i
        ).numpy()  # fmt: skip
        for i in range(0, len(first), BATCH)
    ]
    return np.concatenate(out)


def gan_videos(run: Path, texts: np.ndarray, seed: int) -> np.ndarray:
    """The GAN's videos from texts alone."""
    from research.tgan.model import Tgan

    model = Tgan.load(run).eval()
    with torch.no_grad():
        out = [model.generate(torch.from_numpy(texts[i : i + BATCH]), seed=seed + i).numpy()
               for i in range(0, len(texts), BATCH)]  # fmt: skip
    return np.concatenate(out)


def across_texts(videos: np.ndarray) -> float:
    """Mean L1 distance between the videos of neighbouring test texts (N, T, 3, H, W): near 0 when collapsed."""
    return float(np.mean([diversity(np.stack([a, b])) for a, b in zip(videos, np.roll(videos, 1, axis=0))]))


def digits_report(scale: ex.Scale, log: list[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Double Moving Digits: every method on the test split; the videos for the figures."""
    train12, test12 = ex.digits_data(scale, ex.MAGE_FRAMES)
    train16, test16 = ex.digits_data(scale, ex.GAN_FRAMES)
    probe = TrajectoryProbe(objects=2)
    probe.fit(train16.videos, np.stack([c.positions for c in train16.clips]), steps=scale.probe_steps)
    labels = list(digits.MOTIONS)
    features = {}
    for frames, train in ((ex.MAGE_FRAMES, train12), (ex.GAN_FRAMES, train16)):
        # the Fréchet features only need to separate motions, so a narrow net and a short fit (3D convs are slow here)
        features[frames] = VideoFeatures(objects=2, labels=len(labels), width=8)
        features[frames].fit(train.videos, label_ids([c.motions for c in train.clips], labels),
                             steps=scale.probe_steps // 5, batch=16)  # fmt: skip

    def measure(videos: np.ndarray, test: ex.Data, frames: int, conditioned: bool) -> dict[str, Any]:
        motions = [c.motions for c in test.clips]
        row: dict[str, Any] = {
            "control": control_accuracy(probe.tracks(videos), motions, digits.motion_of),
            "frechet": frechet_distance(features[frames].features(test.videos), features[frames].features(videos)),
            "frames": frames,
        }
        if conditioned:
            row.update(psnr=psnr(videos, test.videos), ssim=ssim(videos, test.videos))
        return row

    rows = {CEILING: measure(test12.videos, test12, ex.MAGE_FRAMES, False)}
    # the floor of the Fréchet distance: real test clips against as many real training clips
    rows[CEILING]["frechet"] = frechet_distance(
        features[ex.MAGE_FRAMES].features(test12.videos),
        features[ex.MAGE_FRAMES].features(train12.videos[: scale.test]),
    )
    made = {"truth": test12.videos, "copy first frame": copy_first_frame(test12.videos)}
    rows["copy first frame"] = measure(made["copy first frame"], test12, ex.MAGE_FRAMES, True)
    if (ex.RUNS / "mage-digits").is_dir():
        made["MAGE"] = mage_videos(ex.RUNS / "mage-digits", test12.videos[:, 0], test12.texts, ex.MAGE_FRAMES, 0)
        rows["MAGE"] = measure(made["MAGE"], test12, ex.MAGE_FRAMES, True)
    made["truth16"] = test16.videos
    rows[CEILING]["across_texts"] = across_texts(test16.videos)
    for name, label in (("gan-digits", "GAN with text matching"), ("gan-digits-nomatch", "GAN without (the blog's)")):
        if (ex.RUNS / name).is_dir():
            made[label] = gan_videos(ex.RUNS / name, test16.texts, 0)
            rows[label] = measure(made[label], test16, ex.GAN_FRAMES, False)
            # collapse shows here: a second draw of the noise for the same texts, and different texts' videos
            again = gan_videos(ex.RUNS / name, test16.texts, 5000)
            rows[label]["diversity"] = float(np.mean([diversity(np.stack(pair)) for pair in zip(made[label], again)]))
            rows[label]["across_texts"] = across_texts(made[label])
    log.append(f"digits: the probe reads {rows[CEILING]['control']:.2f} of the real test clips' motions right")
    return rows, made


def cater_probe(scale: ex.Scale, train: ex.Data) -> ConditionedProbe:
    """A probe of an object's grid place, asked by the object's colour, trained on a few frames of each clip."""
    colours = list(COLOURS)
    rng = np.random.default_rng(0)
    pool, index, which, places = [], [], [], []
    for clip, video in zip(train.clips, train.videos):
        for t in sorted({0, clip.length - 1, *rng.integers(0, clip.length, 2).tolist()}):
            pool.append(video[t])
            for k, name in enumerate(clip.objects):
                index.append(len(pool) - 1)
                which.append(colours.index(next(w for w in name.split() if w in COLOURS)))
                places.append(clip.grid[t, k])  # type: ignore[index]
    probe = ConditionedProbe(len(colours))
    probe.fit(np.stack(pool), np.array(index), np.array(which), np.array(places), steps=scale.probe_steps)
    return probe


def ends_fit(probe: ConditionedProbe, videos: np.ndarray, clips: list, texts: list[str]) -> np.ndarray:
    """Per video: whether the objects its text places end where the text says (read by the probe)."""
    colours = list(COLOURS)
    fits = []
    for video, clip, text in zip(videos, clips, texts):
        named = sorted({k for k, _ in cater.targets(text, clip.objects)})
        ids = np.array([colours.index(next(w for w in clip.objects[k].split() if w in COLOURS)) for k in named])
        grid = np.zeros((len(clip.objects), 2))
        if named:
            grid[named] = probe.places(np.repeat(video[-1:], len(named), axis=0), ids)
        fits.append(cater.region_fits(text, grid, clip.objects))
    return np.array(fits)


def cater_report(scale: ex.Scale, log: list[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """CATER-like scenes: explicit texts (reconstruction, control) and vague ones (diversity, consistency)."""
    train, test = ex.cater_data(scale)
    probe = cater_probe(scale, train)
    explicit = [c.text for c in test.clips]
    rows: dict[str, Any] = {
        CEILING: {"control": float(ends_fit(probe, test.videos, test.clips, explicit).mean())},
    }
    made = {"truth": test.videos, "copy first frame": copy_first_frame(test.videos)}
    rows["copy first frame"] = {
        "control": float(ends_fit(probe, made["copy first frame"], test.clips, explicit).mean()),
        "psnr": psnr(made["copy first frame"], test.videos), "ssim": ssim(made["copy first frame"], test.videos),
    }  # fmt: skip
    run = ex.RUNS / "mage-cater"
    if run.is_dir():
        made["MAGE"] = mage_videos(run, test.videos[:, 0], test.texts, ex.MAGE_FRAMES, 0)
        rows["MAGE"] = {
            "control": float(ends_fit(probe, made["MAGE"], test.clips, explicit).mean()),
            "psnr": psnr(made["MAGE"], test.videos), "ssim": ssim(made["MAGE"], test.videos),
        }  # fmt: skip
        n = min(scale.vague_inputs, len(test.clips))
        assert test.vague is not None
        for kind, ids, texts in (("vague", test.vague[:n], [c.ambiguous or "" for c in test.clips[:n]]),
                                 ("explicit", test.texts[:n], explicit[:n])):  # fmt: skip
            samples = np.stack([mage_videos(run, test.videos[:n, 0], ids, ex.MAGE_FRAMES, 1000 * s)
                                for s in range(scale.samples)])  # fmt: skip
            rows[f"MAGE, {scale.samples} samples of each {kind} text"] = {
                "diversity": float(np.mean([diversity(samples[:, i]) for i in range(n)])),
                "consistent": float(
                    np.mean([ends_fit(probe, samples[s], test.clips[:n], texts).mean() for s in range(scale.samples)])
                ),  # fmt: skip
            }
            made[f"samples {kind}"] = samples[:, 0]
    log.append(
        f"cater: the probe finds {rows[CEILING]['control']:.2f} of the real test clips' objects where their texts say"
    )
    return rows, made


def table(rows: dict[str, Any]) -> str:
    """A markdown table of one report."""
    keys = [
        k
        for k in ("psnr", "ssim", "control", "frechet", "diversity", "across_texts", "consistent")
        if any(k in r for r in rows.values())
    ]
    lines = ["| method | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, row in rows.items():
        cells = [f"{row[k]:.3g}" if k in row else "—" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figures(digit_videos: dict[str, np.ndarray], cater_videos: dict[str, np.ndarray]) -> None:
    """The GIF grids and contact sheets the README shows."""
    picks = range(min(4, len(digit_videos["truth"])))
    columns = [k for k in ("truth", "MAGE", "copy first frame") if k in digit_videos]
    rows = [[digit_videos[c][i] for c in columns] for i in picks]
    grid_gif(ex.RESULTS / "digits-mage.gif", columns, rows)
    contact_sheet(ex.RESULTS / "digits-mage.png", columns, rows)
    gan = [k for k in ("truth16", "GAN with text matching", "GAN without (the blog's)") if k in digit_videos]
    rows = [[digit_videos[c][i] for c in gan] for i in picks]
    grid_gif(ex.RESULTS / "digits-gan.gif", ["truth", *gan[1:]], rows)
    contact_sheet(ex.RESULTS / "digits-gan.png", ["truth", *gan[1:]], rows)
    columns = [k for k in ("truth", "MAGE", "copy first frame") if k in cater_videos]
    rows = [[cater_videos[c][i] for c in columns] for i in picks]
    grid_gif(ex.RESULTS / "cater-mage.gif", columns, rows)
    contact_sheet(ex.RESULTS / "cater-mage.png", columns, rows)
    if "samples vague" in cater_videos:
        samples = cater_videos["samples vague"]
        grid_gif(
            ex.RESULTS / "cater-vague-samples.gif", [f"sample {s + 1}" for s in range(len(samples))], [list(samples)]
        )


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation and write research/results/."""
    parser = argparse.ArgumentParser(description="Evaluate the research runs on the test splits.")
    parser.add_argument("--quick", action="store_true", help="the quick scale (as bench/research.py --quick)")
    args = parser.parse_args(argv)
    scale = ex.Scale.quick() if args.quick else ex.Scale.bench()
    ex.seeded(0)
    clock, log = ex.Clock(), []
    digit_rows, digit_videos = digits_report(scale, log)
    cater_rows, cater_videos = cater_report(scale, log)
    runs = {p.name: ex.read_run(p) for p in sorted(ex.RUNS.glob("*")) if (p / "run.json").is_file()}
    ex.RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"scale": ex.scale_facts(scale), "digits": digit_rows, "cater": cater_rows, "runs": runs,
              "seconds": clock()}  # fmt: skip
    (ex.RESULTS / "results.json").write_text(json.dumps(report, indent=2, default=float), "utf-8")
    markdown = f"## Double Moving Digits\n\n{table(digit_rows)}\n\n## CATER-like\n\n{table(cater_rows)}\n"
    (ex.RESULTS / "results.md").write_text(markdown, "utf-8")
    figures(digit_videos, cater_videos)
    print(markdown, *log, f"evaluated in {clock()} s", sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
