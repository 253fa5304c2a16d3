"""MAGE scaled down: tiny seeded models on 16×16 moving squares, shapes, training, sampling, causality, files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from research.mage import Mage, MageConfig, train_mage, train_vqvae
from research.mage.anchor import kl_to_standard_normal

torch.set_num_threads(1)

VOCAB = 12
MOVES = {2: (0, 1), 3: (0, -1), 4: (1, 0), 5: (-1, 0)}  # word id → (dy, dx) per frame: right, left, down, up


def squares(frames: int = 5, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Four clips (4, T, 3, S, S) of a coloured 4×4 square moving as its text (4, 6) says."""
    videos = torch.zeros(4, frames, 3, size, size)
    texts = torch.zeros(4, 6, dtype=torch.long)
    colours = torch.tensor([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.2, 1.0], [1.0, 1.0, 0.2]])
    for i, (word, (dy, dx)) in enumerate(MOVES.items()):
        y, x = 6 - 3 * dy, 6 - 3 * dx
        for t in range(frames):
            top, left = y + dy * t, x + dx * t
            videos[i, t, :, top : top + 4, left : left + 4] = colours[i].view(3, 1, 1)
        texts[i, :3] = torch.tensor([6 + i, word, 10])
    return videos, texts


def tiny(**overrides: object) -> Mage:
    """A freshly seeded tiny model."""
    torch.manual_seed(0)
    return Mage(MageConfig.tiny(VOCAB, **overrides))


@pytest.fixture(scope="module")
def trained() -> Mage:
    """A tiny model whose VQ-VAE has seen the squares (so its codebook holds real encodings), the rest untrained."""
    model = tiny()
    videos, _ = squares()
    train_vqvae(model, videos, steps=15, batch=8, lr=3e-3, seed=0)
    return model.eval()


def test_the_tiny_preset_is_tiny_and_bench_is_larger() -> None:
    tiny_count = sum(p.numel() for p in tiny().parameters())
    bench_count = sum(p.numel() for p in Mage(MageConfig.bench(VOCAB)).parameters())
    assert 5_000 < tiny_count < 60_000
    assert bench_count > 10 * tiny_count


def test_each_component_has_the_documented_shapes(trained: Mage) -> None:
    videos, texts = squares()
    c = trained.config
    ids = trained.vqvae.encode(videos[:, 0])
    assert ids.shape == (4, 4, 4) and ids.dtype == torch.long
    assert 0 <= int(ids.min()) and int(ids.max()) < c.codebook_size
    frames = trained.vqvae.decode(ids)
    assert frames.shape == (4, 3, 16, 16) and 0 <= float(frames.min()) and float(frames.max()) <= 1

    text = trained.text_encoder(texts)
    assert text.words.shape == (4, 6, c.width) and text.sentence.shape == (4, c.width)
    assert text.mask.tolist() == (texts != 0).tolist()

    video_ids = trained.tokenize(videos)
    assert video_ids.shape == (4, 5, 4, 4)
    features = trained.tokens(video_ids)
    assert features.shape == (4, 5, 4, 4, c.width)
    anchor = trained.anchor(features[:, 0], text.words, text.mask)
    assert anchor.shape == (4, c.width, 4, 4)
    assert trained.posterior is not None
    mean, logvar = trained.posterior(features)
    assert mean.shape == logvar.shape == (4, c.z_channels, 4, 4)
    assert trained.transformer(features[:, :-1], anchor).shape == (4, 4, 4, 4, c.codebook_size)

    loss = trained.loss(videos, texts)
    assert set(loss) == {"loss", "tokens", "kl"} and loss["loss"].dim() == 0 and float(loss["kl"]) > 0


def test_the_kl_term_is_zero_exactly_at_the_prior() -> None:
    zeros = torch.zeros(2, 4, 3, 3)
    assert float(kl_to_standard_normal(zeros, zeros)) == 0
    assert float(kl_to_standard_normal(zeros + 1, zeros)) == pytest.approx(2 * 4 * 3 * 3 / 2 / 2)


def test_training_the_vqvae_lowers_its_loss() -> None:
    model = tiny()
    videos, _ = squares()
    losses = train_vqvae(model, videos, steps=40, batch=20, lr=3e-3, seed=0)
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    assert not any(p.requires_grad for p in model.vqvae.parameters())  # frozen afterwards


def test_training_the_generator_lowers_its_loss_and_leaves_the_vqvae_alone(trained: Mage) -> None:
    model = tiny()
    model.load_state_dict(trained.state_dict())
    vqvae_before = {k: v.clone() for k, v in model.vqvae.state_dict().items()}
    videos, texts = squares()
    losses = train_mage(model, videos, texts, steps=30, batch=4, lr=3e-3, seed=0)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    assert all(torch.equal(vqvae_before[k], v) for k, v in model.vqvae.state_dict().items())


def test_training_is_deterministic_by_seed() -> None:
    videos, texts = squares()
    runs = []
    for _ in range(2):
        model = tiny()
        train_vqvae(model, videos, steps=3, batch=4, lr=1e-3, seed=5)
        runs.append(train_mage(model, videos, texts, steps=3, batch=2, lr=1e-3, seed=5))
    assert runs[0] == runs[1]


def test_sampling_is_deterministic_by_seed_and_keeps_the_first_frame(trained: Mage) -> None:
    videos, texts = squares()
    first = videos[:, 0]
    video = trained.generate(first, texts, frames=5, seed=3)
    assert video.shape == (4, 5, 3, 16, 16)
    assert torch.equal(video, trained.generate(first, texts, frames=5, seed=3))
    assert torch.equal(video, trained.generate(first, texts, frames=5, generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(video[:, 1:], trained.generate(first, texts, frames=5, seed=4)[:, 1:])
    through_codec = trained.vqvae.decode(trained.vqvae.encode(first))
    torch.testing.assert_close(video[:, 0], through_codec, rtol=0, atol=1e-5)


def test_greedy_sampling_still_varies_with_the_latent_only_when_randomness_is_on(trained: Mage) -> None:
    videos, texts = squares()
    ids = trained.tokenize(videos)
    z1, z2 = trained.sample_prior(4), trained.sample_prior(4)
    assert not torch.allclose(trained.logits(ids, texts, z=z1), trained.logits(ids, texts, z=z2))
    plain = tiny(randomness=False).eval()
    assert plain.sample_prior(4) is None
    greedy = [plain.generate(videos[:, 0], texts, frames=3, seed=s, greedy=True) for s in (1, 2)]
    assert torch.equal(greedy[0], greedy[1])
    with pytest.raises(ValueError, match="randomness=False"):
        plain.logits(plain.tokenize(videos), texts, z=z1)


def test_time_attention_is_causal(trained: Mage) -> None:
    torch.manual_seed(1)
    features = torch.randn(2, 5, 4, 4, trained.config.width)
    anchor = torch.randn(2, trained.config.width, 4, 4)
    with torch.no_grad():
        before = trained.transformer(features, anchor)
        for t in range(5):
            changed = features.clone()
            changed[:, t] = torch.randn_like(changed[:, t])
            after = trained.transformer(changed, anchor)
            # output i predicts frame i + 1 from frames 0..i: predictions of frames ≤ t must not move
            torch.testing.assert_close(after[:, :t], before[:, :t], rtol=0, atol=1e-6)
            assert (after[:, t:] - before[:, t:]).abs().amax() > 1e-3


def test_the_text_changes_the_logits_for_the_same_first_frame(trained: Mage) -> None:
    videos, texts = squares()
    ids = trained.tokenize(videos[:1, :2]).expand(2, -1, -1, -1)
    z = trained.sample_prior(1).expand(2, -1, -1, -1)
    with torch.no_grad():
        logits = trained.logits(ids, texts[:2], z=z)
    assert (logits[0] - logits[1]).abs().amax() > 1e-4


def test_save_and_load_give_identical_outputs(trained: Mage, tmp_path: Path) -> None:
    videos, texts = squares()
    trained.save(tmp_path / "mage")
    loaded = Mage.load(tmp_path / "mage")
    assert loaded.config == trained.config
    assert torch.equal(
        loaded.generate(videos[:, 0], texts, frames=4, seed=9), trained.generate(videos[:, 0], texts, frames=4, seed=9)
    )
    with pytest.raises(FileNotFoundError, match="no saved MAGE"):
        Mage.load(tmp_path / "missing")


def test_bad_inputs_are_refused_with_the_argument_named(trained: Mage) -> None:
    videos, texts = squares()
    with pytest.raises(ValueError, match="video must be float"):
        trained.loss(videos[:, :, :, :8], texts)
    with pytest.raises(ValueError, match=r"video must hold values in \[0, 1\]"):
        trained.loss(videos * 2, texts)
    with pytest.raises(ValueError, match="all padding"):
        trained.loss(videos, torch.zeros_like(texts))
    with pytest.raises(ValueError, match="text ids must lie"):
        trained.loss(videos, texts + VOCAB)
    with pytest.raises(ValueError, match="frames must be in"):
        trained.generate(videos[:, 0], texts, frames=trained.config.max_frames + 1)
    with pytest.raises(ValueError, match="seed or generator"):
        trained.generate(videos[:, 0], texts, frames=2, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="texts must be"):
        train_mage(trained, videos, texts[:2], steps=1, batch=1, lr=1e-3, seed=0)
