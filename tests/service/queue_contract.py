"""The JobQueue contract: every implementation (local thread, Procrastinate, ...) must pass these tests.

Use it by subclassing `QueueContract` in a `Test...` class that provides two fixtures:
`database_url` (a fresh, empty database per test) and `job_queue_factory`
(`(repository, pipeline_factory, settings) -> JobQueue`, not yet started).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from engine.config import Settings, load_settings, replace
from engine.pipeline import Pipeline, PipelineResult, ProgressCallback
from engine.service.queue.protocol import JobQueue
from engine.service.repository import default_limits
from engine.types import AnimationOptions
from storage.records import JobRecord, NewJob
from storage.repository import Repository
from tests.support.memes import meme

QueueFactory = Callable[[Repository, Callable[[], Any], Settings], JobQueue]
TEST_TIMEOUT_S = 60.0  # a whole scenario, as a safety net: each wait below has its own, shorter bound
WAIT_S = 20.0
SMALL = {"frames": 4, "size": 96}  # the real pipeline in about a third of a second on a CPU


def new_job(user: str, *, options: dict[str, Any] | None = None, image: bytes | None = None, key: str | None = None):
    """A submission from its own user, so per-user limits never get in the way."""
    return NewJob(
        platform="test", user_id=user, chat_id=f"chat-{user}", is_admin=False,
        options=dict(SMALL if options is None else options), seed=7,
        image=meme() if image is None else image, idempotency_key=key,
    )  # fmt: skip


def write_checkpoint(directory: Path, name: str) -> None:
    """A tiny but real LoRA file: one down/up pair of rank 2."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(name))
    tensors = {
        "unet.up_blocks.0.attn.to_q.lora_down.weight": rng.standard_normal((2, 16), dtype=np.float32),
        "unet.up_blocks.0.attn.to_q.lora_up.weight": rng.standard_normal((16, 2), dtype=np.float32),
    }
    save_file(tensors, str(directory / f"{name}.safetensors"), metadata={"rank": "2"})


class PausingPipeline:
    """Test double for timing-sensitive tests: the REAL pipeline, held at the start of one stage until released."""

    def __init__(self, pipeline: Pipeline, pause_at: str) -> None:
        self.pipeline = pipeline
        self.pause_at = pause_at
        self.reached = threading.Event()
        self.release = threading.Event()
        self.stages: list[str] = []  # every stage boundary the queue let through
        self.threads: set[int] = set()

    def run(self, data: bytes, options: AnimationOptions, progress: ProgressCallback | None = None) -> PipelineResult:
        """Run the real pipeline, pausing at `pause_at` while `release` is unset."""
        self.threads.add(threading.get_ident())

        def held(stage: str, fraction: float) -> None:
            if progress is not None:
                progress(stage, fraction)  # the queue may raise here: cancelled or stopping
            self.stages.append(stage)
            if stage == self.pause_at and not self.release.is_set():
                self.reached.set()
                if not self.release.wait(WAIT_S):
                    raise TimeoutError("the test never released the pipeline")

        return self.pipeline.run(data, options, progress=held)

    async def wait_until_paused(self) -> None:
        """Wait (bounded) until a job is held at `pause_at`."""
        assert await asyncio.to_thread(self.reached.wait, WAIT_S), f"no job reached {self.pause_at}"


async def wait_for_status(queue: JobQueue, job_id: str, *statuses: str, timeout: float = WAIT_S) -> JobRecord:
    """Poll get() until the job has one of `statuses` (independent of watch(), which has its own test)."""
    deadline = time.monotonic() + timeout
    while True:
        record = await queue.get(job_id)
        assert record is not None, f"job {job_id} vanished"
        if record.status in statuses:
            return record
        assert time.monotonic() < deadline, f"job {job_id} is {record.status}, not {'/'.join(statuses)}"
        await asyncio.sleep(0.02)


async def until(condition: Callable[[], bool]) -> None:
    """Wait for an in-process condition; callers bound it with wait_for."""
    while not condition():
        await asyncio.sleep(0.01)


@functools.cache
def shared_pipeline() -> Pipeline:
    """The real pipeline, built once for the whole run: the worker reuses one pipeline for every job too."""
    return Pipeline(load_settings())


def run(scenario: Coroutine[Any, Any, None]) -> None:
    """Run one async scenario with an overall bound."""
    asyncio.run(asyncio.wait_for(scenario, TEST_TIMEOUT_S))


class QueueContract:
    """The behaviour the API relies on, whatever runs the jobs."""

    @pytest.fixture
    def pipeline(self) -> Pipeline:
        return shared_pipeline()

    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return replace(load_settings(), checkpoints={"dir": str(tmp_path / "checkpoints")})

    @pytest.fixture
    def service(self, job_queue_factory: QueueFactory, database_url: str) -> Callable[..., Any]:
        """`async with service(pipeline_factory, settings) as (queue, repository)`: a started queue, stopped after."""

        @asynccontextmanager
        async def running(factory: Callable[[], Any], settings: Settings) -> AsyncIterator[tuple[JobQueue, Repository]]:
            repository = await Repository.open(database_url, default_limits=default_limits(settings))
            try:
                queue = job_queue_factory(repository, factory, settings)
                await queue.start()
                try:
                    yield queue, repository
                finally:
                    await queue.stop()
            finally:
                await repository.close()

        return running

    def test_a_job_runs_to_done_with_its_result(self, service: Any, pipeline: Pipeline, settings: Settings) -> None:
        async def scenario() -> None:
            async with service(lambda: pipeline, settings) as (queue, repository):
                submitted = await queue.submit(new_job("alice"))
                assert submitted.created and submitted.job.status in ("queued", "running")
                job = await wait_for_status(queue, submitted.job.id, "done", "failed")
                assert job.status == "done", job.error
                data, format = await repository.result(job.id)
                assert format == job.result_format == "gif" and data[:6] == b"GIF89a"
                assert job.result_bytes == len(data) and job.attempts == 1 and job.checkpoint is None
                assert set(job.script or {}) >= {"ocr", "description", "meme_text", "emotion", "motion_prompt",
                                                 "camera", "explanation"}  # fmt: skip
                assert job.timings and job.timings["total"] > 0 and job.error is None
                assert job.started_at and job.finished_at and job.created_at <= job.started_at <= job.finished_at

        run(scenario())

    def test_positions_follow_submission_order(self, service: Any, pipeline: Pipeline, settings: Settings) -> None:
        held = PausingPipeline(pipeline, pause_at="ocr")

        async def scenario() -> None:
            async with service(lambda: held, settings) as (queue, _):
                first = (await queue.submit(new_job("u1"))).job.id
                await held.wait_until_paused()
                second = (await queue.submit(new_job("u2"))).job.id
                third = (await queue.submit(new_job("u3"))).job.id
                assert [await queue.position(i) for i in (first, second, third)] == [None, 1, 2]
                held.release.set()
                await wait_for_status(queue, second, "running", "done")
                assert await queue.position(third) in (1, None)  # next in line, or already started
                jobs = [await wait_for_status(queue, i, "done") for i in (first, second, third)]
                starts = [job.started_at for job in jobs]
                assert starts == sorted(starts)
                assert [await queue.position(i) for i in (second, third)] == [None, None]

        run(scenario())

    def test_resubmitting_with_the_same_key_returns_the_same_job(
        self, service: Any, pipeline: Pipeline, settings: Settings
    ) -> None:
        async def scenario() -> None:
            async with service(lambda: pipeline, settings) as (queue, _):
                first = await queue.submit(new_job("bob", key="msg-42"))
                again = await queue.submit(new_job("bob", key="msg-42"))
                assert first.created and not again.created and again.job.id == first.job.id
                job = await wait_for_status(queue, first.job.id, "done")
                late = await queue.submit(new_job("bob", key="msg-42"))
                assert not late.created and late.job.id == job.id and late.job.status == "done"
                assert (await wait_for_status(queue, job.id, "done")).attempts == 1

        run(scenario())

    def test_a_cancelled_queued_job_never_runs(self, service: Any, pipeline: Pipeline, settings: Settings) -> None:
        held = PausingPipeline(pipeline, pause_at="ocr")

        async def scenario() -> None:
            async with service(lambda: held, settings) as (queue, _):
                first = (await queue.submit(new_job("u1"))).job.id
                await held.wait_until_paused()
                doomed = (await queue.submit(new_job("u2"))).job.id
                last = (await queue.submit(new_job("u3"))).job.id
                cancelled = await queue.cancel(doomed)
                assert cancelled is not None and cancelled.status == "cancelled"
                assert await queue.position(doomed) is None and await queue.position(last) == 1
                held.release.set()
                await wait_for_status(queue, first, "done")
                await wait_for_status(queue, last, "done")
                job = await queue.get(doomed)
                assert job and job.status == "cancelled" and job.attempts == 0 and job.started_at is None
                assert (await queue.cancel(last)).status == "done"  # a final job stays as it was
                assert await queue.cancel("0" * 32) is None

        run(scenario())

    def test_a_cancelled_running_job_stops_at_the_next_stage(
        self, service: Any, pipeline: Pipeline, settings: Settings
    ) -> None:
        held = PausingPipeline(pipeline, pause_at="ocr")

        async def scenario() -> None:
            async with service(lambda: held, settings) as (queue, repository):
                job_id = (await queue.submit(new_job("u1"))).job.id
                await held.wait_until_paused()
                assert (await queue.cancel(job_id)).status == "cancelled"
                held.release.set()
                # The worker is free again: the next job runs to the end.
                after = (await queue.submit(new_job("u2"))).job.id
                await wait_for_status(queue, after, "done")
                job = await queue.get(job_id)
                assert job and job.status == "cancelled" and await repository.result(job_id) is None
                # The job ran the stage it was in and no further: only the following boundary stopped it.
                first_run = held.stages[: held.stages.index("intake", 1)]
                assert first_run == ["intake", "ocr"]

        run(scenario())

    def test_bad_input_fails_with_a_readable_message(
        self, service: Any, pipeline: Pipeline, settings: Settings
    ) -> None:
        async def scenario() -> None:
            async with service(lambda: pipeline, settings) as (queue, repository):
                junk = (await queue.submit(new_job("u1", image=b"%PDF-1.4 not a meme"))).job.id
                # options come checked by the API; a budget nothing fits is the pipeline's own refusal
                tight = (await queue.submit(new_job("u2", options={"max_bytes": 300}))).job.id
                for job_id, word in ((junk, "image"), (tight, "small enough")):
                    job = await wait_for_status(queue, job_id, "failed", "done")
                    assert job.status == "failed" and job.error_code and word in (job.error or "")
                    assert job.error.endswith(".") and "Traceback" not in job.error
                    assert await repository.result(job_id) is None

        run(scenario())

    def test_watch_yields_progress_and_ends_on_the_final_record(
        self, service: Any, pipeline: Pipeline, settings: Settings
    ) -> None:
        held = PausingPipeline(pipeline, pause_at="ocr")

        async def scenario() -> None:
            async with service(lambda: held, settings) as (queue, _):
                job_id = (await queue.submit(new_job("u1"))).job.id
                behind = (await queue.submit(new_job("u2"))).job.id
                last = (await queue.submit(new_job("u3"))).job.id
                await held.wait_until_paused()
                seen: list[JobRecord] = []
                watched = queue.watch(last)
                first = await asyncio.wait_for(anext(watched), WAIT_S)
                assert first.record.status == "queued" and first.position == 2 == await queue.position(last)
                await queue.cancel(behind)
                # Only its place changed, and that alone is news.
                again = await asyncio.wait_for(anext(watched), WAIT_S)
                assert again.record.status == "queued" and again.position == 1 == await queue.position(last)

                async def follow() -> None:
                    async for record, position in queue.watch(job_id):
                        assert position is None  # it is running, then final
                        seen.append(record)

                following = asyncio.create_task(follow())
                await asyncio.wait_for(until(lambda: bool(seen)), WAIT_S)  # the held stage is seen first
                held.release.set()
                await asyncio.wait_for(following, WAIT_S)  # it ends by itself
                assert seen[0].status == "running" and seen[0].stage == "ocr" and seen[-1].status == "done"
                assert [r for r in seen if r.final] == [seen[-1]]
                fractions = [r.fraction for r in seen if r.status == "running"]
                assert fractions == sorted(fractions)
                rest = [update async for update in watched]
                assert rest and rest[-1].record.status == "done" and rest[-1].position is None

        run(scenario())

    def test_a_job_interrupted_by_a_restart_completes(
        self, service: Any, pipeline: Pipeline, settings: Settings
    ) -> None:
        held = PausingPipeline(pipeline, pause_at="ocr")

        async def scenario() -> None:
            async with service(lambda: held, settings) as (queue, _):
                job_id = (await queue.submit(new_job("u1"))).job.id
                waiting = (await queue.submit(new_job("u2"))).job.id
                await held.wait_until_paused()
                stopping = asyncio.create_task(queue.stop())
                await asyncio.sleep(0.05)
                held.release.set()
                await asyncio.wait_for(stopping, WAIT_S)
                job = await queue.get(job_id)
                assert job and job.status == "running" and job.attempts == 1  # left for the next start
            async with service(lambda: pipeline, settings) as (queue, _):
                job = await wait_for_status(queue, job_id, "done")
                assert job.attempts == 2 and (await wait_for_status(queue, waiting, "done")).attempts == 1

        run(scenario())

    def test_a_job_interrupted_too_often_fails(self, service: Any, pipeline: Pipeline, settings: Settings) -> None:
        settings = replace(settings, queue={"max_attempts": 2})

        async def scenario() -> None:
            job_id = ""
            for attempt in (1, 2):
                held = PausingPipeline(pipeline, pause_at="ocr")
                async with service(lambda held=held: held, settings) as (queue, _):
                    if attempt == 1:
                        job_id = (await queue.submit(new_job("u1"))).job.id
                    await held.wait_until_paused()
                    stopping = asyncio.create_task(queue.stop())
                    await asyncio.sleep(0.05)
                    held.release.set()
                    await asyncio.wait_for(stopping, WAIT_S)
            async with service(lambda: pipeline, settings) as (queue, _):
                job = await wait_for_status(queue, job_id, "failed", "done")
                assert job.status == "failed" and job.attempts == 2 and job.error and job.error.endswith(".")

        run(scenario())

    def test_each_job_records_the_checkpoint_active_when_it_started(
        self, service: Any, pipeline: Pipeline, settings: Settings
    ) -> None:
        directory = Path(settings.checkpoints.dir)
        write_checkpoint(directory, "anime-v1")
        write_checkpoint(directory, "claymation")
        held = PausingPipeline(pipeline, pause_at="ocr")

        async def scenario() -> None:
            async with service(lambda: held, settings) as (queue, repository):
                await repository.set_active_checkpoint("anime-v1")
                first = (await queue.submit(new_job("u1"))).job.id
                await held.wait_until_paused()
                await repository.set_active_checkpoint("claymation")  # mid-job: applies to the next job
                second = (await queue.submit(new_job("u2"))).job.id
                assert (await queue.get(first)).checkpoint == "anime-v1"
                held.release.set()
                jobs = [await wait_for_status(queue, i, "done") for i in (first, second)]
                assert [job.checkpoint for job in jobs] == ["anime-v1", "claymation"]

        run(scenario())
