"""The text-to-video GAN on tiny seeded models: shapes, the two-stream composition, the KL, the matching term,
training, seeded sampling and the save/load round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from research.tgan import Tgan, TganConfig, train_tgan
from research.tgan.image import ConditioningAugmentation, batch_spread, kl_divergence
from research.tgan.model import critic_loss, generator_loss
from research.tgan.video import time_strides

torch.set_num_threads(1)
VOCAB = 8  # <pad>, <unk>, square, moves, right, left, down, up


def squares(frames: int = 4, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Four clips of a white square moving right, left, down and up, with their texts ("square moves right")."""
    videos = torch.zeros(4, frames, 3, size, size)
    for i, (dy, dx) in enumerate([(0, 1), (0, -1), (1, 0), (-1, 0)]):
        for t in range(frames):
            y, x = 6 + 2 * dy * t, 6 + 2 * dx * t
            videos[i, t, :, y : y + 4, x : x + 4] = 1.0
    texts = torch.tensor([[2, 3, 4 + i, 0, 0, 0, 0, 0] for i in range(4)])
    return videos, texts


def tiny(seed: int = 0, **changes: object) -> Tgan:
    """A tiny seeded model at 16×16 × 4 frames."""
    torch.manual_seed(seed)
    return Tgan(TganConfig.tiny(VOCAB, **changes))


def test_every_component_gives_the_right_shapes() -> None:
    model = tiny()
    c = model.config
    _, texts = squares()
    embedding = model.text_encoder(texts)
    condition, mu, log_sigma = model.augmentation(embedding)
    assert embedding.shape == (4, c.text_dim)
    assert condition.shape == mu.shape == log_sigma.shape == (4, c.cond_dim)
    image = model.image_generator(condition, torch.randn(4, c.noise_dim))
    assert image.shape == (4, 3, 16, 16)
    out = model.video_generator(image, condition, torch.randn(4, c.noise_dim))
    assert out.video.shape == out.foreground.shape == (4, 4, 3, 16, 16)
    assert out.mask.shape == (4, 4, 1, 16, 16) and out.background.shape == (4, 3, 16, 16)
    assert model.image_discriminator.match(model.image_discriminator.features(image), embedding).shape == (4,)
    features = model.video_discriminator.features(out.video)
    assert model.video_discriminator.real(features).shape == model.video_discriminator.match(features, embedding).shape
    videos = model.generate(texts, seed=0)
    assert videos.shape == (4, 4, 3, 16, 16) and float(videos.min()) >= 0 and float(videos.max()) <= 1


@pytest.mark.parametrize(("frames", "size"), [(8, 16), (6, 32)])
def test_other_lengths_and_sizes_compose_the_same_way(frames: int, size: int) -> None:
    model = tiny(frames=frames, size=size)
    videos = model.generate(squares()[1], seed=1)
    assert videos.shape == (4, frames, 3, size, size)


def test_time_doubles_in_the_last_upsampling_steps() -> None:
    assert time_strides(16, 4) == [2, 2, 2, 2]
    assert time_strides(6, 3) == [1, 1, 2]  # 6 frames from 3
    assert time_strides(4, 4) == [1, 1, 2, 2]  # 4 frames from 1


def test_mask_is_in_unit_interval_and_the_video_is_exactly_its_composition() -> None:
    model = tiny()
    with torch.no_grad():
        out = model.sample(squares()[1], generator=torch.Generator().manual_seed(0)).video
    assert float(out.mask.min()) >= 0 and float(out.mask.max()) <= 1
    assert float(out.mask.std()) > 0
    assert torch.equal(out.video, out.mask * out.foreground + (1 - out.mask) * out.background.unsqueeze(1))


def test_background_is_static_and_the_foreground_moves() -> None:
    model = tiny()
    c = model.config
    condition, image = torch.randn(2, c.cond_dim), torch.rand(2, 3, 16, 16) * 2 - 1
    first = model.video_generator(image, condition, torch.randn(2, c.noise_dim))
    second = model.video_generator(image, condition, torch.randn(2, c.noise_dim))
    # the motion noise changes the foreground but not the background, which has no time axis at all
    assert torch.equal(first.background, second.background)
    assert not torch.allclose(first.foreground, second.foreground)
    # frames differ from each other in the foreground, so the composed video moves
    assert (first.foreground[:, 1:] - first.foreground[:, :-1]).abs().amax() > 1e-3
    assert (first.video[:, 1:] - first.video[:, :-1]).abs().amax() > 1e-3


def test_conditioning_augmentation_kl() -> None:
    zeros = torch.zeros(3, 5)
    assert float(kl_divergence(zeros, zeros)) == 0.0
    torch.manual_seed(0)
    assert float(kl_divergence(torch.randn(3, 5), torch.randn(3, 5))) > 0
    augmentation = ConditioningAugmentation(text_dim=6, cond_dim=5)
    c, mu, log_sigma = augmentation(torch.randn(3, 6), generator=torch.Generator().manual_seed(0))
    assert c.shape == (3, 5) and float(kl_divergence(mu, log_sigma).detach()) >= 0
    assert not torch.equal(c, mu)  # c is drawn around μ, not μ itself


def test_the_critics_see_how_varied_their_batch_is() -> None:
    same, varied = torch.ones(3, 2, 4, 4), torch.arange(96.0).reshape(3, 2, 4, 4)
    assert batch_spread(same).shape == (3, 3, 4, 4) and float(batch_spread(same)[:, 2].abs().max()) == 0
    assert torch.equal(batch_spread(varied)[:, :2], varied) and float(batch_spread(varied)[:, 2].min()) > 0


def discriminator_losses(model: Tgan, texts: torch.Tensor) -> dict[str, torch.Tensor]:
    """The critics' losses on the square clips with `texts`, against one fixed batch of fakes.

    In eval mode, so spectral normalisation's power iteration holds still and two calls are comparable.
    """
    model.eval()
    videos, right = squares()
    fakes = model.sample(right, generator=torch.Generator().manual_seed(0)).detached()
    with torch.no_grad():
        return model.discriminator_losses(videos, texts, fakes)


def test_the_video_critic_matches_text_only_when_asked() -> None:
    _, texts = squares()
    swapped = texts[[1, 0, 3, 2]]
    # on: the loss has the matching term, and swapping the texts changes it (not the real/fake head)
    matching = tiny(text_match=True)
    before, after = discriminator_losses(matching, texts), discriminator_losses(matching, swapped)
    assert torch.allclose(before["video"], before["video_adversarial"] + before["video_match"])
    assert torch.equal(before["video_adversarial"], after["video_adversarial"])
    assert abs(float(before["video_match"] - after["video_match"])) > 1e-6
    # off: no matching term, and the texts do not reach the video loss; the image critic still matches
    blind = tiny(text_match=False)
    before, after = discriminator_losses(blind, texts), discriminator_losses(blind, swapped)
    assert "video_match" not in before and torch.equal(before["video"], before["video_adversarial"])
    assert torch.equal(before["video"], after["video"])
    assert abs(float(before["image"] - after["image"])) > 1e-6


@pytest.mark.parametrize("loss", ["hinge", "bce"])
def test_a_repeated_text_is_not_used_as_a_wrong_text(loss: str) -> None:
    model = tiny(loss=loss).eval()
    videos, texts = squares()
    same = texts[[0, 0, 0, 0]]
    fakes = model.sample(same, generator=torch.Generator().manual_seed(0)).detached()
    with torch.no_grad():
        losses = model.discriminator_losses(videos, same, fakes)
        d = model.video_discriminator
        right = model.embed(same)
        real, fake = d.features(videos * 2 - 1), d.features(fakes.video.video)
        real_right, fake_right = d.match(real, right), d.match(fake, right)
    if loss == "bce":
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        expected = bce(real_right, torch.ones(4)) + 0.5 * bce(fake_right, torch.zeros(4))
    else:
        expected = (1 - real_right).clamp(min=0).mean() + 0.5 * (1 + fake_right).clamp(min=0).mean()
    assert torch.allclose(losses["video_match"], expected)


def test_hinge_losses_cost_only_the_wrong_side_of_the_margin() -> None:
    logits = torch.tensor([-2.0, -0.5, 0.5, 2.0])
    assert torch.allclose(critic_loss("hinge", logits, True), torch.tensor((3.0 + 1.5 + 0.5 + 0.0) / 4))
    assert torch.allclose(critic_loss("hinge", logits, False), torch.tensor((0.0 + 0.5 + 1.5 + 3.0) / 4))
    keep = torch.tensor([1.0, 0.0, 0.0, 1.0])  # the weighted mean averages only the rows kept
    assert torch.allclose(critic_loss("hinge", logits, True, keep), torch.tensor(1.5))
    assert torch.allclose(generator_loss("hinge", logits), torch.tensor(0.0))
    assert torch.allclose(generator_loss("bce", torch.zeros(3)), torch.log(torch.tensor(2.0)))


def test_spectral_normalisation_bounds_every_critic_layer() -> None:
    model = tiny().eval()
    critics = [model.image_discriminator, model.video_discriminator]
    kinds = torch.nn.Conv2d | torch.nn.Conv3d | torch.nn.Linear
    layers = [m for c in critics for m in c.modules() if isinstance(m, kinds)]
    assert layers and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    for layer in layers:  # each weight, as its layer applies it, has a largest singular value of about 1
        assert 0.95 < float(torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)) < 1.3
    generators = [model.text_encoder, model.augmentation, model.image_generator, model.video_generator]
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for g in generators for m in g.modules())
    plain = tiny(spectral_norm=False)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in plain.modules())


def test_a_few_training_steps_lower_the_critics_loss_on_the_batch() -> None:
    model = tiny(seed=3)
    videos, texts = squares()
    before = float(discriminator_losses(model, texts)["total"])
    generator_weights = [p.detach().clone() for p in model.generator_parameters()]
    history = train_tgan(model, videos, texts, steps=12, batch=4, lr=2e-3, seed=0)
    after = float(discriminator_losses(model, texts)["total"])
    assert after < before - 0.15, (before, after)
    assert len(history["d"]) == len(history["g"]) == 12 and len(history["text"]) == model.config.text_steps
    assert history["text"][-1] < history["text"][0]
    assert any(not torch.equal(old, new) for old, new in zip(generator_weights, model.generator_parameters()))


def test_sampling_is_deterministic_by_seed() -> None:
    model = tiny()
    _, texts = squares()
    assert torch.equal(model.generate(texts, seed=5), model.generate(texts, seed=5))
    assert not torch.equal(model.generate(texts, seed=5), model.generate(texts, seed=6))
    assert torch.equal(model.generate(texts, seed=5), model.generate(texts, generator=torch.Generator().manual_seed(5)))
    with pytest.raises(ValueError, match="seed or generator"):
        model.generate(texts, seed=5, generator=torch.Generator())


def test_save_and_load_give_identical_outputs(tmp_path: Path) -> None:
    model = tiny(text_match=False)
    _, texts = squares()
    model.save(tmp_path / "tgan")
    loaded = Tgan.load(tmp_path / "tgan")
    assert loaded.config == model.config and not loaded.config.text_match
    assert torch.equal(loaded.generate(texts, seed=2), model.generate(texts, seed=2))


def test_bad_inputs_are_refused_by_name() -> None:
    model = tiny()
    videos, texts = squares()
    with pytest.raises(ValueError, match="text must be int64"):
        model.generate(texts.float())
    with pytest.raises(ValueError, match=r"text ids must lie in \[0, 8\)"):
        model.generate(texts + 10)
    with pytest.raises(ValueError, match="videos must be float"):
        train_tgan(model, videos[:, :2], texts, steps=1, batch=2, lr=1e-3, seed=0)
    with pytest.raises(ValueError, match="batch must lie"):
        train_tgan(model, videos, texts, steps=1, batch=5, lr=1e-3, seed=0)
    with pytest.raises(ValueError, match="size must be 4·2"):
        TganConfig.tiny(VOCAB, size=24)
