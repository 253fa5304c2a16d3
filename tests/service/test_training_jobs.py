"""Remix, tune and train jobs through the real API and queue, on the tiny random models (CPU, no downloads)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from engine.config import Settings, load_settings, replace
from engine.pipeline import Pipeline
from tests.service.api_world import ADMIN_AUTH, AUTH, BOTH, assert_error, engine, events, get_json

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tiny models and their configs, once for the module; one torch thread (two cores, other work)."""
    from engine.runtime.tiny import make_tiny

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tiny")
    make_tiny(folder)
    yield folder
    torch.set_num_threads(threads)


def tiny_settings(tiny: Path, tmp_path: Path, **training: Any) -> Settings:
    """tiny.toml, with this test's own database, registry, work folder and datasets folder."""
    return replace(
        load_settings(tiny / "tiny.toml"),
        storage={"url": f"sqlite:///{tmp_path / 'engine.db'}"},
        checkpoints={"dir": str(tmp_path / "ckpt")},
        training={"work_dir": str(tmp_path / "work"), "datasets_dir": str(tmp_path / "datasets"), **training},
        limits={"user": {"jobs": 100, "concurrent": 10}},
    )


def moving_gif(seed: int = 0, frames: int = 10) -> bytes:
    """A small GIF of a square sliding across a gradient: motion to learn, nothing else."""
    rng = np.random.default_rng(seed)
    colour = tuple(int(c) for c in rng.integers(40, 255, 3))
    pictures = []
    for i in range(frames):
        canvas = np.zeros((48, 64, 3), np.uint8)
        canvas[..., 2] = np.linspace(0, 200, 64, dtype=np.uint8)[None, :]
        x = 4 + i * 4
        canvas[16:32, x : x + 16] = colour
        pictures.append(Image.fromarray(canvas))
    out = io.BytesIO()
    pictures[0].save(out, "GIF", save_all=True, append_images=pictures[1:], duration=100, loop=0)
    return out.getvalue()


async def post_clip(
    client: TestClient, path: str, clip: bytes, options: dict[str, Any], *, headers: dict[str, str], user: str = "a1"
) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    form.add_field("image", clip, filename="clip.gif", content_type="image/gif")
    form.add_field("options", json.dumps(options))
    for name, value in {"platform": "test", "user_id": user, "chat_id": "c1"}.items():
        form.add_field(name, value)
    async with client.post(path, data=form, headers=headers) as response:
        return response.status, await response.json()


async def finished(client: TestClient, job_id: str) -> dict[str, Any]:
    """The job's last event: the stream closes once the job is final."""
    seen = await events(client, job_id)
    assert seen, "the stream said nothing"
    return seen[-1]


def serve(settings: Settings, scenario: Any) -> None:
    async def main() -> None:
        pipeline = Pipeline(settings)
        async with engine(settings, pipeline, BOTH) as client:
            await scenario(client)

    asyncio.run(main())


def test_a_tuned_checkpoint_is_listed_with_how_it_was_made_and_a_remix_of_its_gif_reuses_it(
    tiny: Path, tmp_path: Path
) -> None:
    settings = tiny_settings(tiny, tmp_path)
    clip = moving_gif(1)

    async def scenario(client: TestClient) -> None:
        # an admin tunes a checkpoint on the GIF
        status, body = await post_clip(
            client, "/v1/admin/tunes", clip, {"name": "slide", "prompt": "a square slides right"}, headers=ADMIN_AUTH
        )
        assert status == 202, body
        job = await finished(client, body["id"])
        assert (job["status"], job["kind"], job["made"]) == ("done", "tune", "slide"), job
        assert job["script"]["steps"] == settings.training.tune_steps and job["script"]["losses"]
        status, result = await get_json(client, f"/v1/jobs/{body['id']}/result")
        assert status in (404, 410) and result["code"] != "internal_error", "a checkpoint is not an animation"
        # it is in the registry, saying how it was made
        status, listing = await get_json(client, "/v1/admin/checkpoints", headers=ADMIN_AUTH)
        (entry,) = [c for c in listing["checkpoints"] if c["name"] == "slide"]
        assert entry["valid"] and entry["training"]["kind"] == "tune" and entry["training"]["family"] == "t2v"
        assert entry["training"]["rank"] == settings.training.tune_rank
        assert entry["training"]["examples"] == ["a square slides right"]
        # only the temporal layers were kept: the subject is the prompt's to change
        from safetensors import safe_open

        with safe_open(str(tmp_path / "ckpt" / "slide.safetensors"), framework="np") as saved:
            keys = list(saved.keys())
        assert keys and all(".temp_attentions." in k for k in keys), keys[:3]

        # anyone remixes the same GIF: the admin's checkpoint is found by the GIF's hash, nothing is tuned again
        status, body = await post_clip(
            client, "/v1/remixes", clip, {"prompt": "a red ball rolls", "format": "gif", "seed": 3}, headers=AUTH
        )
        assert status == 202, body
        job = await finished(client, body["id"])
        assert (job["status"], job["kind"]) == ("done", "remix"), job
        assert job["script"]["checkpoint_used"] == "slide" and job["script"]["tuned_now"] is False
        async with client.get(f"/v1/jobs/{body['id']}/result", headers=AUTH) as response:
            assert response.status == 200 and response.content_type == "image/gif"
            gif = Image.open(io.BytesIO(await response.read()))
            assert gif.n_frames == settings.training.tune_frames

    serve(settings, scenario)


def test_a_remix_of_a_new_gif_tunes_once_and_the_next_remix_reuses_the_cache(tiny: Path, tmp_path: Path) -> None:
    settings = tiny_settings(tiny, tmp_path)
    clip = moving_gif(2)
    # a hostile file in the registry (a header nested 5000 deep) is the registry's to list as invalid: a remix,
    # which looks through the registry for a checkpoint tuned on its GIF, never trips on it
    (tmp_path / "ckpt").mkdir()
    header = b"[" * 5000 + b"]" * 5000
    (tmp_path / "ckpt" / "deep.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)

    async def scenario(client: TestClient) -> None:
        stages: list[str] = []
        for n, expect_tuning in enumerate((True, False)):
            status, body = await post_clip(
                client, "/v1/remixes", clip, {"prompt": "a cat walks", "format": "mp4", "seed": n}, headers=AUTH
            )
            assert status == 202, body
            seen = await events(client, body["id"])
            stages = [e["progress"]["stage"] for e in seen]
            fractions = [e["progress"]["fraction"] for e in seen]
            assert seen[-1]["status"] == "done", seen[-1]
            assert seen[-1]["script"]["tuned_now"] is expect_tuning
            assert ("tuning" in stages) is expect_tuning, stages
            assert fractions == sorted(fractions), "progress never goes back"
        assert "sampling" in stages
        kept = [p.name for p in (tmp_path / "ckpt").glob("*.safetensors")]
        assert kept == ["deep.safetensors"], "a remix's tuning stays out of the registry"

    serve(settings, scenario)


def test_training_on_a_dataset_and_the_admin_only_and_one_at_a_time_rules(tiny: Path, tmp_path: Path) -> None:
    from engine.training.dataset import build_dataset

    settings = tiny_settings(tiny, tmp_path)
    source = tmp_path / "memes"
    source.mkdir()
    for n in range(2):
        (source / f"clip{n}.gif").write_bytes(moving_gif(10 + n))
    build_dataset(source, tmp_path / "datasets" / "memes", settings, family="t2v")
    request = {"dataset": "memes", "name": "memes-v1", "platform": "test", "user_id": "a1", "steps": 3}

    async def scenario(client: TestClient) -> None:
        # bots can't train, and a dataset is a name under datasets_dir, never a path
        async with client.post("/v1/admin/trainings", json=request, headers=AUTH) as response:
            assert response.status in (401, 403)
        async with client.post("/v1/admin/tunes", headers=AUTH) as response:
            assert response.status in (401, 403)
        for bad in ("../memes", "nothing-here"):
            async with client.post("/v1/admin/trainings", json={**request, "dataset": bad}, headers=ADMIN_AUTH) as r:
                assert_error(r.status, await r.json(), 400)

        async with client.post("/v1/admin/trainings", json=request, headers=ADMIN_AUTH) as response:
            first = await response.json()
            assert response.status == 202, first
        # one training job at a time per admin, while the first is queued or running
        status, body = await post_clip(client, "/v1/admin/tunes", moving_gif(3), {"name": "x"}, headers=ADMIN_AUTH)
        job = await finished(client, first["id"])
        if status != 202:  # the first one may already have ended on a fast machine
            assert_error(status, body, 409, "training_busy")
        else:
            await finished(client, body["id"])
        assert (job["status"], job["kind"], job["made"]) == ("done", "train", "memes-v1"), job
        status, listing = await get_json(client, "/v1/admin/checkpoints", headers=ADMIN_AUTH)
        (entry,) = [c for c in listing["checkpoints"] if c["name"] == "memes-v1"]
        assert entry["training"]["kind"] == "train" and entry["training"]["steps"] == 3

    serve(settings, scenario)


def test_without_a_gpu_backend_remixing_and_tuning_say_how_to_set_one_up(tmp_path: Path) -> None:
    settings = replace(
        load_settings(), storage={"url": f"sqlite:///{tmp_path / 'engine.db'}"}, checkpoints={"dir": str(tmp_path)}
    )

    async def scenario(client: TestClient) -> None:
        for path, options, headers in (
            ("/v1/remixes", {"prompt": "a dog"}, AUTH),
            ("/v1/admin/tunes", {"name": "x"}, ADMIN_AUTH),
        ):
            status, body = await post_clip(client, path, moving_gif(), options, headers=headers)
            assert_error(status, body, 409, "needs_gpu_backend")
            assert 'backend = "t2v"' in body["message"] and "hf download" in body["message"]

    serve(settings, scenario)


def test_a_clip_the_engine_cannot_read_is_refused_with_a_sentence(tiny: Path, tmp_path: Path) -> None:
    settings = tiny_settings(tiny, tmp_path)

    async def scenario(client: TestClient) -> None:
        status, body = await post_clip(client, "/v1/remixes", b"%PDF-1.7 not a clip", {"prompt": "x"}, headers=AUTH)
        assert_error(status, body, 415, "not_a_clip")
        status, body = await post_clip(client, "/v1/remixes", moving_gif(), {"prompt": ""}, headers=AUTH)
        assert_error(status, body, 400, "bad_options")
        # a GIF whose frame header claims 65535 x 65535 pixels is refused from its header, before any decoding
        huge = bytearray(moving_gif())
        huge[6:10] = b"\xff\xff\xff\xff"  # the logical screen: 65535 x 65535
        status, body = await post_clip(client, "/v1/remixes", bytes(huge), {"prompt": "a dog"}, headers=AUTH)
        assert status in (400, 413) and body["code"] != "internal_error", body
        # a banned user is refused before the clip is looked at
        async with client.post(
            "/v1/admin/bans", json={"platform": "test", "user_id": "troll", "reason": "spam"}, headers=ADMIN_AUTH
        ) as response:
            assert response.status == 200
        status, body = await post_clip(client, "/v1/remixes", moving_gif(), {"prompt": "x"}, headers=AUTH, user="troll")
        assert_error(status, body, 403, "banned")
        # a video whose header lies passes the magic bytes and fails in the worker, with a sentence
        fake_mp4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64
        status, body = await post_clip(client, "/v1/remixes", fake_mp4, {"prompt": "a dog"}, headers=AUTH)
        assert status == 202, body
        job = await finished(client, body["id"])
        assert job["status"] == "failed" and job["error"]["code"] != "internal_error", job
        assert "Traceback" not in job["error"]["message"]

    serve(settings, scenario)
