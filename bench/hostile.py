"""Benchmark: normal submissions while a hostile client replays tests/support/hostile.py's corpus, in one run.

Usage: python bench/service.py --mixed [--rate 100] [--seconds 20] [--attackers 2]
   or: python bench/hostile.py [same options]
Starts `makeitmove serve` (OCR off, 2 frames at 64 px), then offers `rate` normal submissions/s for `seconds`
twice: alone (the baseline), then with `attackers` clients (each its own process) sending the corpus in a loop,
one request at a time. Prints, for each phase, submit p50/p99, /v1/health p99 (the 100 ms target) and the
engine's peak RSS over that phase (VmHWM is reset between phases through /proc/PID/clear_refs), and the
mixed/alone ratios. Prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.figures import percentile  # noqa: E402
from bench.service import CONFIG  # noqa: E402
from tests.support import hostile  # noqa: E402
from tests.support.hostile import Target  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

TOKEN, ADMIN = "bench-hostile-token", "bench-hostile-admin"


def status(pid: int, field: str) -> int:
    """A /proc/PID/status field in KB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def normal_load(target: Target, rate: float, seconds: float) -> list[float]:
    """`rate` submissions/s for `seconds` (open loop); the latency of each, seconds."""
    latencies: list[float] = []

    async def one(n: int) -> None:
        started = time.perf_counter()
        answer = await hostile.submit(target, user=f"u{n % 50}")
        if answer.status == 202:
            latencies.append(time.perf_counter() - started)

    tasks = []
    begin = time.perf_counter()
    for n in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, begin + n / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    return latencies


async def attack(target: Target) -> None:
    """One hostile client: the corpus in a loop, one request at a time, until SIGTERM; prints how many it sent.

    It runs in a process of its own: building its payloads (a 19 MB field, a 36 MP PNG) costs CPU that must not
    stall the normal load's event loop and count against the engine.
    """
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    sent = 0
    while not stop.is_set():
        for case in hostile.CASES:
            if stop.is_set():
                break
            await case.send(target)
            sent += 1
    print(sent, flush=True)


async def attacker(target: Target, stop: asyncio.Event) -> int:
    """One attacking process until `stop`; how many hostile requests it sent."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--attack", str(target.port), target.job_id, stdout=asyncio.subprocess.PIPE
    )
    await stop.wait()
    process.terminate()
    out, _ = await process.communicate()
    return int(out.strip() or 0)


async def health_probe(target: Target, stop: asyncio.Event) -> list[float]:
    """/v1/health latencies, every 50 ms until `stop`."""
    out = []
    while not stop.is_set():
        started = time.perf_counter()
        await hostile.exchange(target, hostile.http("GET", "/v1/health", []))
        out.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)
    return out


async def phase(target: Target, pid: int, rate: float, seconds: float, attackers: int) -> dict[str, float]:
    """One phase's figures."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS, so the peak is this phase's
    stop = asyncio.Event()
    probe = asyncio.create_task(health_probe(target, stop))
    attacks = [asyncio.create_task(attacker(target, stop)) for _ in range(attackers)]
    latencies = await normal_load(target, rate, seconds)
    stop.set()
    sent = sum(await asyncio.gather(*attacks))
    health = await probe
    return {
        "accepted": len(latencies), "hostile sent": sent,
        "submit p50 ms": percentile(latencies, 50) * 1000, "submit p99 ms": percentile(latencies, 99) * 1000,
        "health p99 ms": percentile(health, 99) * 1000, "peak RSS MB": status(pid, "VmHWM") / 1024,
    }  # fmt: skip


def run(rate: float, seconds: float, attackers: int) -> None:
    """Both phases against one engine, and the table."""
    exe = shutil.which("makeitmove") or sys.exit("install the package first: pip install -e .")
    if not Path("/proc/self/clear_refs").exists():
        sys.exit("this benchmark reads and resets peak RSS through /proc (Linux only)")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = Path(tmp) / "bench.toml"
        config.write_text(CONFIG.format(port=port, db=f"{tmp}/bench.db", tmp=tmp))
        env = {**os.environ, "ENGINE_TOKEN": TOKEN, "ENGINE_ADMIN_TOKEN": ADMIN}
        with open(Path(tmp) / "serve.log", "wb") as log:
            server = subprocess.Popen([exe, "serve", "--config", str(config)], env=env, stdout=log, stderr=log)
            try:
                figures = asyncio.run(measure(Target(port, TOKEN, ADMIN), server, rate, seconds, attackers))
            finally:
                server.terminate()
                server.wait(timeout=60)
    alone, mixed = figures
    print(f"{rate:.0f} submissions/s for {seconds:.0f} s, alone and beside {attackers} hostile clients")
    print(f"  {'':<16}{'alone':>12}{'mixed':>12}{'mixed/alone':>14}")
    for name in alone:
        ratio = mixed[name] / alone[name] if alone[name] else float("nan")
        print(f"  {name:<16}{alone[name]:12.1f}{mixed[name]:12.1f}{ratio:14.2f}")
    print("  targets: health p99 <= 100 ms; submit p99 and peak RSS close to the run alone")


async def measure(
    target: Target, server: subprocess.Popen[bytes], rate: float, seconds: float, attackers: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Wait for the engine, prepare the corpus's job and ban, then run both phases."""
    deadline = time.monotonic() + 120
    while (await hostile.exchange(target, hostile.http("GET", "/v1/health", []))).status != 200:
        if server.poll() is not None or time.monotonic() > deadline:
            sys.exit("the engine did not start; see its log")
        await asyncio.sleep(0.2)
    ban = hostile.http("POST", "/v1/admin/bans", [hostile.bearer(target, True), (b"Content-Type", b"application/json")],
                       b'{"platform": "test", "user_id": "banned"}')  # fmt: skip
    await hostile.exchange(target, ban)
    first = await hostile.submit(target)
    target.job_id = str((first.body or {}).get("id", "0" * 32))
    alone = await phase(target, server.pid, rate, seconds, 0)
    mixed = await phase(target, server.pid, rate, seconds, attackers)
    return alone, mixed


def main(argv: list[str] | None = None) -> None:
    """The command line."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--attack"]:
        asyncio.run(attack(Target(int(argv[1]), TOKEN, ADMIN, job_id=argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="normal submissions/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--attackers", type=int, default=2, help="hostile clients in the mixed phase")
    args = parser.parse_args(argv)
    run(args.rate, args.seconds, args.attackers)


if __name__ == "__main__":
    main()
