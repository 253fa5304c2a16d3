"""`makeitmove serve` as a real subprocess: health, one job end to end, refusals, clean shutdown on SIGTERM."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.support.memes import meme
from tests.support.ports import free_port

TOKEN, ADMIN = "serve-test-token", "serve-test-admin"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def exe() -> str:
    return shutil.which("makeitmove") or pytest.fail("the makeitmove console script is not installed")


def write_config(tmp_path: Path, port: int, host: str = "127.0.0.1") -> Path:
    config = tmp_path / "engine.toml"
    config.write_text(
        f'[engine]\nhost = "{host}"\nport = {port}\n'
        f'[storage]\nurl = "sqlite:///{tmp_path / "db" / "engine.db"}"\n'
        f'[checkpoints]\ndir = "{tmp_path / "ckpt"}"\n'
        "[generate]\nframes = 4\n[encode]\nsize = 96\n"
    )
    return config


def test_serve_runs_a_job_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    env = {**os.environ, "ENGINE_TOKEN": TOKEN, "ENGINE_ADMIN_TOKEN": ADMIN}
    process = subprocess.Popen(
        [exe(), "serve", "--config", str(config)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()
            try:
                health = requests.get(f"{base}/v1/health", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the engine did not start within 60 s"
                time.sleep(0.1)
        assert health.status_code == 200 and health.json()["pipeline_loaded"] is True

        assert requests.get(f"{base}/v1/users/t/u/quota", timeout=5).status_code == 401
        files = {"image": ("meme.png", meme(), "image/png")}
        form = {"platform": "test", "user_id": "u1", "chat_id": "c1", "options": json.dumps({"seed": 3})}
        submitted = requests.post(f"{base}/v1/jobs", files=files, data=form, headers=AUTH, timeout=30)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        with requests.get(f"{base}/v1/jobs/{job_id}/events", headers=AUTH, stream=True, timeout=120) as stream:
            events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith(b"data: ")]
        assert events[-1]["status"] == "done", events[-1]
        result = requests.get(f"{base}/v1/jobs/{job_id}/result", headers=AUTH, timeout=30)
        assert result.headers["Content-Type"] == "image/gif"
        assert Image.open(io.BytesIO(result.content)).n_frames == 4
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"serve did not stop within 30 s of SIGTERM:\n{err[-3000:]}")
    assert process.returncode == 0, err[-3000:]
    assert "queue stopped" in err and "Traceback" not in err
    assert TOKEN not in err + out and ADMIN not in err + out


def test_serve_refuses_a_public_host_without_a_token(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port(), host="0.0.0.0")
    env = {k: v for k, v in os.environ.items() if k not in ("ENGINE_TOKEN", "ENGINE_ADMIN_TOKEN")}
    done = subprocess.run(
        [exe(), "serve", "--config", str(config)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: refusing to listen on 0.0.0.0")
    assert "ENGINE_TOKEN" in done.stderr


def test_db_upgrade_applies_the_migrations_alone(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port())
    done = subprocess.run([exe(), "db", "upgrade", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "db" / "engine.db").stat().st_size > 0 and "up to date" in done.stderr
