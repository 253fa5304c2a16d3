"""Benchmark: train MAGE and the text-to-video GAN from scratch on generated data, then evaluate them side by side.

Usage:
  python bench/research.py all [--quick]            the four runs (two at a time, one core each), then the evaluation
  python bench/research.py train NAME [--quick]     one run: mage-digits, mage-cater, gan-digits, gan-digits-nomatch
  python -m research.eval [--quick]                 the evaluation alone, on the runs already in research/runs/

Runs are written to research/runs/NAME (model and run.json: steps, seconds, losses); the evaluation writes
research/results/. `--quick` trains for a minute or two: it shows the path works, not what the methods can do.
Needs the test extra (`pip install -e '.[test]'`: torch, scikit-image); no GPU, nothing downloaded.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NAMES = ("mage-digits", "mage-cater", "gan-digits", "gan-digits-nomatch")


def train(name: str, quick: bool) -> None:
    """Train one run and save it under research/runs/NAME."""
    try:
        import torch

        from research import experiments as ex
        from research.data import cater, digits
        from research.mage.model import Mage, MageConfig
        from research.mage.train import train_mage, train_vqvae
        from research.tgan.model import Tgan, TganConfig
        from research.tgan.train import train_tgan
    except ImportError as exc:
        sys.exit(f"bench/research.py needs the test extra (pip install -e '.[test]'): {exc}")
    scale = ex.Scale.quick() if quick else ex.Scale.bench()
    ex.seeded(0)
    clock, directory = ex.Clock(), ex.RUNS / name
    if name.startswith("mage"):
        train_set, _ = ex.digits_data(scale, ex.MAGE_FRAMES) if name == "mage-digits" else ex.cater_data(scale)
        vocabulary = digits.vocabulary() if name == "mage-digits" else cater.vocabulary()
        config = MageConfig.bench(len(vocabulary), max_frames=ex.MAGE_FRAMES, text_length=ex.TEXT_LENGTH)
        model = Mage(config)
        vq = train_vqvae(model, train_set.videos, steps=scale.mage_vqvae_steps, batch=32, lr=2e-3, seed=0)
        print(f"{name}: VQ-VAE {len(vq)} steps, loss {vq[0]:.3f} -> {vq[-1]:.3f} at {clock()} s", flush=True)
        texts = ex.mixed_texts(train_set, seed=0)  # CATER: half the clips with their vague text
        losses = train_mage(model, train_set.videos, texts, steps=scale.mage_steps, batch=16, lr=1e-3, seed=0)
        model.save(directory)
        facts = {"vqvae_loss": [vq[0], vq[-1]], "loss": [losses[0], sum(losses[-50:]) / len(losses[-50:])]}
    else:
        train_set, _ = ex.digits_data(scale, ex.GAN_FRAMES)
        config = TganConfig.bench(
            len(digits.vocabulary()), text_length=ex.TEXT_LENGTH, frames=ex.GAN_FRAMES, text_match=name == "gan-digits"
        )
        model = Tgan(config)
        history = train_tgan(model, torch.from_numpy(train_set.videos), torch.from_numpy(train_set.texts),
                             steps=scale.gan_steps, batch=16, lr=2e-4, seed=0)  # fmt: skip
        model.save(directory)
        facts = {key: [values[0], sum(values[-50:]) / len(values[-50:])] for key, values in history.items() if values}
    ex.write_run(directory, name=name, quick=quick, seconds=clock(), scale=ex.scale_facts(scale), **facts)
    print(f"{name}: trained in {clock()} s -> {directory}", flush=True)


def run_all(quick: bool) -> None:
    """The four runs, two processes at a time (each one thread), then the evaluation."""
    flag = ["--quick"] if quick else []
    for pair in (NAMES[:2], NAMES[2:]):
        processes = [subprocess.Popen([sys.executable, __file__, "train", name, *flag]) for name in pair]
        failed = [name for name, p in zip(pair, processes) if p.wait() != 0]
        if failed:
            sys.exit(f"training failed: {', '.join(failed)}")
    sys.exit(subprocess.call([sys.executable, "-m", "research.eval", *flag], cwd=REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("train", help="train one run")
    one.add_argument("name", choices=NAMES)
    one.add_argument("--quick", action="store_true")
    every = commands.add_parser("all", help="train the four runs, then evaluate")
    every.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.command == "train":
        train(args.name, args.quick)
    else:
        run_all(args.quick)


if __name__ == "__main__":
    main()
