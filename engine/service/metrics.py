"""Prometheus metrics of one service instance, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from engine.pipeline import STAGES, Pipeline, PipelineResult, ProgressCallback
from engine.types import AnimationOptions
from storage.records import JOB_STATUSES, Stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Stage times run from milliseconds (intake) to minutes (GPU generation).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class ServiceMetrics:
    """Queue depth, jobs by status, submissions and per-stage durations."""

    def __init__(self) -> None:
        # One registry per app, so tests and several apps in a process never share counters.
        self.registry = CollectorRegistry(auto_describe=True)
        self.queue_depth = Gauge("makeitmove_queue_depth", "Jobs waiting in the queue", registry=self.registry)
        self.jobs = Gauge("makeitmove_jobs", "Jobs in the database by status", ["status"], registry=self.registry)
        self.submissions = Counter(
            "makeitmove_submissions", "POST /v1/jobs answers by outcome", ["outcome"], registry=self.registry
        )
        self.stage_seconds = Histogram(
            "makeitmove_stage_seconds", "Pipeline stage durations of finished jobs", ["stage"],
            buckets=BUCKETS, registry=self.registry,
        )  # fmt: skip
        for status in JOB_STATUSES:
            self.jobs.labels(status=status)

    def observe_timings(self, timings: dict[str, float]) -> None:
        """Feed one finished job's stage timings (seconds) into the histograms."""
        for stage, seconds in timings.items():
            if stage in STAGES or stage == "total":
                self.stage_seconds.labels(stage=stage).observe(seconds)

    def refresh(self, stats: Stats) -> None:
        """Copy the database's counts in just before a scrape."""
        self.queue_depth.set(stats.queue_depth)
        for status in JOB_STATUSES:
            self.jobs.labels(status=status).set(stats.jobs_by_status.get(status, 0))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class MeteredPipeline:
    """The pipeline as the worker runs it, reporting each finished run's stage timings to the metrics."""

    def __init__(self, pipeline: Pipeline, metrics: ServiceMetrics) -> None:
        self._pipeline = pipeline
        self._metrics = metrics

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline itself: remix and training jobs use its settings, its models and its encoder."""
        return self._pipeline

    def run(self, data: bytes, options: AnimationOptions, progress: ProgressCallback | None = None) -> PipelineResult:
        """Run the pipeline and record its timings."""
        result = self._pipeline.run(data, options, progress=progress)
        self._metrics.observe_timings(result.timings)
        return result
