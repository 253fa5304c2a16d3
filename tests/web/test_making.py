"""Training and tuning from the dashboard's checkpoints page, on the tiny random models (CPU, no downloads).

The real app on aiohttp's test client, signed in with the CSRF-carrying forms; the jobs run on the real
queue and the real trainer, and are followed over the bot API's event stream.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from engine.config import Settings
from engine.pipeline import Pipeline
from storage.admission import TRAINING_BUSY
from tests.service.test_training_jobs import moving_gif, tiny_settings
from tests.web.client import BOT_AUTH, page_csrf, run, sign_in

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

T = TypeVar("T")
WAIT_S = 60.0
JOB_PAGE = re.compile(r"/admin/jobs/([0-9a-f]{32})")


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


def with_dataset(tiny: Path, tmp_path: Path) -> Settings:
    """Tiny settings and a real dataset folder `memes` under [training] datasets_dir, built from two GIFs."""
    from engine.training.dataset import build_dataset

    settings = tiny_settings(tiny, tmp_path)
    source = tmp_path / "memes"
    source.mkdir()
    for n in range(2):
        (source / f"clip{n}.gif").write_bytes(moving_gif(10 + n))
    build_dataset(source, Path(settings.training.datasets_dir) / "memes", settings, family="t2v")
    return settings


class HeldModels:
    """The pipeline's real model pool; a job asking for the video model waits there until the test lets it go."""

    def __init__(self, models: Any) -> None:
        self._models = models
        self.reached = threading.Event()
        self.go = threading.Event()

    def shared(self, key: Hashable, make: Callable[[], T]) -> T:
        """The real pool's model, once released (training and tuning jobs ask for "video" first)."""
        if key == "video":
            self.reached.set()
            if not self.go.wait(WAIT_S):
                raise TimeoutError("the test never released the training job")
        return self._models.shared(key, make)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._models, name)


class HeldPipeline:
    """The REAL pipeline, whose training and tuning jobs hold at their start until `models.go` is set."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self.settings = pipeline.settings
        self.models = HeldModels(pipeline.models)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)


async def text_of(response: aiohttp.ClientResponse) -> tuple[int, str]:
    return response.status, await response.text()


async def queued(response: aiohttp.ClientResponse) -> str:
    """The job id of a form that queued a job (a 303 to its page)."""
    body = await response.text()
    assert response.status == 303, (response.status, body[-2000:])
    found = JOB_PAGE.fullmatch(response.headers["Location"])
    assert found is not None, response.headers["Location"]
    return found.group(1)


async def final_event(client: TestClient, job_id: str) -> dict[str, Any]:
    """The job's last event: the stream closes once the job is final (bounded)."""

    async def follow() -> dict[str, Any]:
        last: dict[str, Any] = {}
        async with client.get(f"/v1/jobs/{job_id}/events", headers=BOT_AUTH) as response:
            assert response.status == 200, await response.text()
            async for line in response.content:
                if line.startswith(b"data: "):
                    last = json.loads(line[6:])
        return last

    return await asyncio.wait_for(follow(), WAIT_S)


def tune_form(token: str, clip: bytes | None, filename: str = "clip.gif", **fields: str) -> aiohttp.FormData:
    """The tuning form as a browser sends it: the CSRF token first, the text fields, then the file."""
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("csrf", token)
    for name, value in fields.items():
        form.add_field(name, value)
    if clip is not None:
        form.add_field("clip", clip, filename=filename, content_type="application/octet-stream")
    return form


def checkpoint_row(html: str, name: str) -> str:
    found = re.search(rf'<tr data-checkpoint="{re.escape(name)}">(.*?)</tr>', html, re.S)
    assert found is not None, f"{name} is not on the checkpoints page"
    return found.group(1)


def test_a_training_started_on_the_checkpoints_page_makes_a_checkpoint_one_at_a_time(
    tiny: Path, tmp_path: Path
) -> None:
    settings = with_dataset(tiny, tmp_path)
    held = HeldPipeline(Pipeline(settings))

    async def scenario(client: TestClient) -> None:
        assert (await sign_in(client)).status == 303
        async with client.get("/admin/checkpoints") as response:
            status, html = await text_of(response)
        assert status == 200 and "Train on a dataset" in html and 'id="needs-gpu"' not in html
        assert "<option>memes</option>" in html and "No checkpoints yet" in html
        token = await page_csrf(client, "/admin/checkpoints")

        form = {"csrf": token, "dataset": "memes", "name": "memes-v1", "steps": "2"}
        async with client.post("/admin/trainings", data=form, allow_redirects=False) as response:
            job_id = await queued(response)
        try:
            assert await asyncio.to_thread(held.models.reached.wait, WAIT_S), "the training job never started"
            async with client.get(f"/admin/jobs/{job_id}") as response:
                status, html = await text_of(response)
            assert status == 200 and "<dt>Kind</dt><dd>train</dd>" in html and 'class="badge running"' in html
            # one training at a time for the dashboard's user, a training or a tuning alike
            again = {**form, "name": "memes-v2"}
            async with client.post("/admin/trainings", data=again, allow_redirects=False) as response:
                status, html = await text_of(response)
            assert status == 409 and TRAINING_BUSY in html, html[-2000:]
            tune = tune_form(token, moving_gif(3), name="slide")
            async with client.post("/admin/tunes", data=tune, allow_redirects=False) as response:
                status, html = await text_of(response)
            assert status == 409 and TRAINING_BUSY in html, html[-2000:]
        finally:
            held.models.go.set()

        job = await final_event(client, job_id)
        assert (job["status"], job["kind"], job["made"]) == ("done", "train", "memes-v1"), job
        async with client.get(f"/admin/jobs/{job_id}") as response:
            status, html = await text_of(response)
        assert status == 200 and 'class="badge done"' in html and "<dt>Kind</dt><dd>train</dd>" in html
        async with client.get("/admin/checkpoints") as response:
            status, html = await text_of(response)
        row = checkpoint_row(html, "memes-v1")
        assert 'class="badge done">ok' in row and "trained on a dataset, t2v" in row and "2 steps" in row, row
        assert "memes-v2" not in html and "slide" not in html  # the refused ones made nothing
        assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["memes-v1.safetensors"]

    run(settings, held, scenario)


def test_a_tuning_started_from_an_uploaded_gif_makes_a_checkpoint(tiny: Path, tmp_path: Path) -> None:
    settings = tiny_settings(tiny, tmp_path)

    async def scenario(client: TestClient) -> None:
        await sign_in(client)
        async with client.get("/admin/checkpoints") as response:
            assert "Tune on one GIF" in await response.text()
        token = await page_csrf(client, "/admin/checkpoints")
        form = tune_form(token, moving_gif(4, frames=6), name="slide", prompt="a square slides right", steps="2")
        async with client.post("/admin/tunes", data=form, allow_redirects=False) as response:
            job_id = await queued(response)
        async with client.get(f"/admin/jobs/{job_id}") as response:
            status, html = await text_of(response)
        assert status == 200 and "<dt>Kind</dt><dd>tune</dd>" in html
        assert f'src="/admin/jobs/{job_id}/input"' in html  # the GIF it was sent

        job = await final_event(client, job_id)
        assert (job["status"], job["kind"], job["made"]) == ("done", "tune", "slide"), job
        assert job["script"]["steps"] == 2, job["script"]
        async with client.get("/admin/checkpoints") as response:
            row = checkpoint_row(await response.text(), "slide")
        assert "tuned on a GIF, t2v" in row and "2 steps" in row and "a square slides right" in row, row
        assert not list((tmp_path / "work" / "uploads").glob("*")), "the uploaded clip was left behind"

    run(settings, Pipeline(settings), scenario)


def test_training_and_tuning_forms_refuse_with_a_sentence_and_queue_nothing(tiny: Path, tmp_path: Path) -> None:
    settings = with_dataset(tiny, tmp_path)

    async def scenario(client: TestClient) -> None:
        await sign_in(client)
        token = await page_csrf(client, "/admin/checkpoints")
        trainings = (
            ({"dataset": "nothing-here", "name": "x"}, "There is no dataset called nothing-here."),
            ({"dataset": "../memes", "name": "x"}, "The training form&#39;s dataset is not valid"),
            ({"dataset": "memes", "name": "../x"}, "The training form&#39;s name is not valid"),
            ({"dataset": "memes", "name": "x", "steps": "0"}, "The training form&#39;s steps is not valid"),
            ({"dataset": "memes", "name": ""}, "The training form&#39;s name is not valid"),
        )
        for fields, sentence in trainings:
            async with client.post("/admin/trainings", data={"csrf": token, **fields}) as response:
                status, html = await text_of(response)
            assert status == 400 and sentence in html, (fields, status, html[-2000:])
            assert "<option>memes</option>" in html, "the refusal is the checkpoints page, forms and all"

        gif = moving_gif(5, frames=4)
        tunes = (
            (tune_form(token, b"%PDF-1.7 not a clip", "doc.pdf", name="x"), 415, "isn&#39;t a GIF or a video"),
            (tune_form(token, None, name="x"), 400, "Choose the GIF or video to tune on."),
            (tune_form(token, b"", "", name="x"), 400, "Choose the GIF or video to tune on."),  # no file chosen
            (tune_form(token, gif, name="../x"), 400, "The tuning form&#39;s name is not valid"),
            (tune_form(token, gif, name="x", steps="0"), 400, "The tuning form&#39;s steps is not valid"),
        )
        for form, expected, sentence in tunes:
            async with client.post("/admin/tunes", data=form) as response:
                status, html = await text_of(response)
            assert status == expected and sentence in html, (expected, sentence, status, html[-2000:])

        async with client.get("/admin/jobs") as response:
            html = await response.text()
        assert not JOB_PAGE.search(html), "a refused form queued a job"
        assert not (tmp_path / "ckpt").exists() or not list((tmp_path / "ckpt").iterdir())
        assert not list((tmp_path / "work" / "uploads").glob("*")), "a refused upload was left behind"

    run(settings, Pipeline(settings), scenario)
