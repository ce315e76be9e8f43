"""End-to-end POST throughput and latency, against a bare baseline, in one run.

- mentorflow: the real `mentorflow serve` process; each request posts a
  lifecycle event (`meeting.held`, with notes) to one of many relationships in
  cultivation: authenticate, load, decide, append, answer.
- baseline:   a bare aiohttp process whose handler does one asyncpg INSERT per
  request (bench/_bare_server.py).

Both run on the same database (embedded, or DATABASE_URL), driven by the same
client at the same concurrency, interleaved for several rounds (each round
in the other order than the one before); figures are medians. Each load
starts once both servers are quiet, and a subject's CPU per request counts
until it is quiet again: the work its workers finish after the load (the
last batches to project) is its own, and must not slow the next subject.
Targets (docs/performance.md): mentorflow >= 0.70x the baseline's
requests/s, and its p99 <= 1.5x the baseline's p99.

    python bench/http.py [--seconds 5] [--rounds 3] [--concurrency 16]
                         [--workers in-process|process|none] [--no-workers]
                         [--loop auto|uvloop|asyncio] [--profile FILE]
                         [--task-times FILE] [--rate R]

Besides each subject's own CPU per request (the server's, and its worker
process's with --workers process), the table shows the CPU PostgreSQL and this
client spent per request during the load, and the share of the machine left
idle: on a closed loop, idle time while the server is below one core means
requests waited on the database or on the server's loop, not on the machine.

--loop picks the event loop of both servers (MENTORFLOW_EVENT_LOOP for the
service, the same for the baseline) and of the client; `auto` is uvloop where
it is installed.

--profile runs the server under pyinstrument and writes its profile of the
whole run (text) to FILE when the server stops.

--task-times times every callback of the server's event loop (asyncio loop
only; bench/_task_times) and keeps FILE up to date with the loop's busy time
by task: each worker's share, the request handlers', and how many callbacks
ran long.

--rate sends R requests/s in all, on a schedule, instead of each client's
next request as soon as it has an answer: a steady, light load, at which the
server's CPU per second (against the baseline's, and against the same run
with --no-workers) shows what the workers cost when they are not competing
with a saturating load.

By default (--workers in-process) the server also runs all its workers
(projections, webhook outbox and dispatcher, Merkle tree builder, checkpoint
publisher, risk worker), which share its CPU. --workers process measures the
deployment docker-compose.yml ships: an API-only server
(MENTORFLOW_RUN_WORKERS=0) beside a `mentorflow worker` process, whose CPU is
counted as the server's too. --workers none (or --no-workers) measures the
API-only server alone, with nobody projecting.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named http.py: put the repository, not bench/, first on the path,
# or it would shadow the standard library's http package.
ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402

from service.platform import event_loop  # noqa: E402
from tests.e2e.journey import TO_CULTIVATION  # noqa: E402
from tests.support.database import database_url_for_tests, drop_schema  # noqa: E402
from tests.support.server import ADMIN_TOKEN, ServerProcess, free_port  # noqa: E402

RELATIONSHIPS = 64
QUIET_WINDOW = 0.3
QUIET_CPU = 0.1
"""A process is quiet once it used at most this share of a core over QUIET_WINDOW
seconds (an idle Mentorflow with every worker running uses about 1%; /proc
counts in ticks of 10 ms)."""


def meeting(n: int) -> dict[str, Any]:
    return {
        "type": "meeting.held",
        "actor": {"id": "mentee-1", "role": "mentee"},
        "data": {
            "held_at": "2026-03-01T10:00:00Z",
            "duration_minutes": 45,
            "topics": ["draft", "next steps"],
            "notes": f"steady progress {n}",
        },
    }


async def load(
    session: aiohttp.ClientSession,
    url_of: Any,
    body_of: Any,
    concurrency: int,
    seconds: float,
    rate: float | None = None,
) -> list[float]:
    """Latencies (s) of the requests that succeeded; fails loudly on any other
    status. Each client sends its next request as soon as it has the answer,
    or, given a `rate` (requests/s of all clients together), on a schedule."""
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(index: int) -> None:
        n = index
        while time.perf_counter() < deadline:
            if rate is not None:  # request n at n / rate: the clients take turns, evenly spaced
                await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            n += concurrency
            started = time.perf_counter()
            async with session.post(url_of(n), json=body_of(n)) as response:
                await response.read()
                if response.status not in (200, 201):
                    raise RuntimeError(f"{response.status}: {await response.text()}")
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return latencies


async def prepare_mentorflow(server: ServerProcess) -> tuple[str, list[str]]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    request = {"role": "writer", "name": f"bench-{uuid.uuid4().hex[:8]}"}
    async with (
        aiohttp.ClientSession(headers=admin) as s,
        s.post(server.url + "/v1/tokens", json=request) as r,
    ):
        token = (await r.json())["token"]
    ids: list[str] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:
        for _ in range(RELATIONSHIPS):
            async with s.post(server.url + "/v1/relationships", json={"mentee_id": "m"}) as r:
                relationship_id = (await r.json())["id"]
            for event_type, data, actor in TO_CULTIVATION:
                body = {"type": event_type, "data": data or {}, "actor": actor}
                async with s.post(
                    f"{server.url}/v1/relationships/{relationship_id}/events", json=body
                ) as r:
                    assert r.status == 201, await r.text()
            ids.append(relationship_id)
    return token, ids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere):
    the server's CPU per request is steadier than requests/s on a busy machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def quiet(pids: list[int], *, timeout: float = 30.0) -> None:
    """Until none of the processes `pids` used more than QUIET_CPU of a core
    over QUIET_WINDOW seconds (or `timeout` passed). Mentorflow's workers
    finish projecting a load after it ends; started at once, the next
    subject's load would share the machine with that work, and the work
    would go uncounted in the CPU of the load that caused it."""
    deadline = time.perf_counter() + timeout
    before = [cpu_seconds(pid) for pid in pids]
    while time.perf_counter() < deadline:
        await asyncio.sleep(QUIET_WINDOW)
        now = [cpu_seconds(pid) for pid in pids]
        if all(b - a <= QUIET_CPU * QUIET_WINDOW for a, b in zip(before, now, strict=True)):
            return
        before = now


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


class MachineCpu:
    """Where the rest of the machine's CPU went while a subject was loaded:
    PostgreSQL (every process named ``postgres`` here: the backends, the WAL
    writer, the checkpointer; 0 for a database on another machine), this
    client, and the share of both cores left idle (Linux /proc; zeros
    elsewhere). A closed loop on a saturated machine has no idle time; with
    idle time and a server below one core, requests wait on something other
    than CPU (the database's commits, or the loop's turns)."""

    def __init__(self) -> None:
        self._postgres = _postgres_cpu()
        self._client = time.process_time()
        self._idle, self._total = _machine_ticks()

    def since(self) -> dict[str, float]:
        """Seconds of PostgreSQL's and the client's CPU since the start,
        and the idle share of the machine (0 to 1)."""
        now = _postgres_cpu()
        postgres = sum(now[pid] - self._postgres.get(pid, 0.0) for pid in now)
        idle, total = _machine_ticks()
        share = (idle - self._idle) / (total - self._total) if total > self._total else 0.0
        return {"postgres": postgres, "client": time.process_time() - self._client, "idle": share}


def _postgres_cpu() -> dict[int, float]:
    """CPU seconds of each PostgreSQL process on this machine (one that
    starts during a load counts whole; one that ends is missed)."""
    found: dict[int, float] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() == "postgres":
                found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


def _machine_ticks() -> tuple[int, int]:
    """Idle (with I/O wait) and total ticks of every core so far (/proc/stat)."""
    try:
        ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return ticks[3] + ticks[4], sum(ticks[:8])


async def _start_worker(
    dsn: str, schema: str, loop: str
) -> tuple[asyncio.subprocess.Process, Path]:
    """`mentorflow worker` beside the API-only server, as docker-compose.yml
    runs it: every worker, the risk worker included, on the server's schema.
    Its output goes to a log file (the path is printed), which
    :func:`_check_worker` shows if the process ends during the run."""
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "MENTORFLOW_DB_SCHEMA": schema,
        "MENTORFLOW_RISK_WORKER": "1",
        "MENTORFLOW_EVENT_LOOP": loop,
    }
    log_fd, log_name = tempfile.mkstemp(prefix="mentorflow-bench-worker-", suffix=".log")
    print(f"worker process log: {log_name}")
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service.cli",
            "worker",
            env=env,
            cwd=ROOT,
            stdout=log_fd,
            stderr=asyncio.subprocess.STDOUT,
        )
    finally:
        os.close(log_fd)  # the process has its own copy
    return process, Path(log_name)


def _check_worker(worker: tuple[asyncio.subprocess.Process, Path] | None) -> None:
    """Stop the run if the worker process has ended: the loads after that
    would measure an API with nobody projecting, under the name of one with
    its workers (0.75x against 0.52x the bare handler here), and say nothing."""
    if worker is None or worker[0].returncode is None:
        return
    process, log_path = worker
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the worker process exited ({process.returncode}) during the run:\n{tail}")


def summary(latencies: list[float], seconds: float, cpu: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "rps": len(ordered) / seconds,
        "p50": ordered[len(ordered) // 2] * 1000,
        "p99": ordered[int(len(ordered) * 0.99)] * 1000,
        "cpu": cpu / len(ordered) * 1000,
        "cpu_s": cpu / seconds * 1000,
    }


async def main(
    seconds: float,
    rounds: int,
    concurrency: int,
    workers: str,
    loop: str = "auto",
    profile: str | None = None,
    task_times: str | None = None,
    rate: float | None = None,
) -> None:
    dsn = database_url_for_tests()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    profiler = ("-m", "pyinstrument", "-r", "text", "-o", profile) if profile else ()
    server = ServerProcess(
        dsn,
        schema,
        MENTORFLOW_RUN_WORKERS="1" if workers == "in-process" else "0",
        MENTORFLOW_RISK_WORKER="1",  # every worker, as deployed (the tests' servers leave it out)
        MENTORFLOW_EVENT_LOOP=loop,
        **_task_times_env(task_times),
    )
    server.python_args = profiler
    server.start()
    worker = await _start_worker(dsn, schema, loop) if workers == "process" else None
    bare_port = free_port()
    bare = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "_bare_server.py"), dsn, schema, str(bare_port), loop
    )
    try:
        token, ids = await prepare_mentorflow(server)
        await _wait_bare(bare_port)
        results: dict[str, list[dict[str, float]]] = {"mentorflow": [], "baseline": []}
        headers = {"Authorization": f"Bearer {token}"}
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
            subjects = {
                "mentorflow": (
                    lambda n: f"{server.url}/v1/relationships/{ids[n % len(ids)]}/events",
                    meeting,
                    [
                        server.process.pid if server.process else 0,
                        *([worker[0].pid] if worker else []),
                    ],
                ),
                "baseline": (
                    lambda n: f"http://127.0.0.1:{bare_port}/events",
                    meeting,
                    [bare.pid],
                ),
            }
            pids = [pid for _, _, subject_pids in subjects.values() for pid in subject_pids]
            for url_of, body_of, _ in subjects.values():  # warm up
                await load(session, url_of, body_of, concurrency, 1.0)
            for round_no in range(rounds):
                # Odd rounds run the baseline first, so that what one subject
                # leaves behind (PostgreSQL's cleanup after a busy phase) weighs
                # on both alike: order matters here (runs of two checkouts
                # taken in turn once showed the baseline 20% slower in every
                # run of the second).
                order = list(subjects.items())
                for name, (url_of, body_of, own) in order[:: -1 if round_no % 2 else 1]:
                    await quiet(pids)
                    cpu = cpu_of(own)
                    machine = MachineCpu()
                    latencies = await load(session, url_of, body_of, concurrency, seconds, rate)
                    during = cpu_of(own) - cpu
                    elsewhere = machine.since()
                    await quiet(own)  # what the load left to do counts as its cost
                    _check_worker(worker)
                    total = cpu_of(own) - cpu
                    figures = summary(latencies, seconds, total)
                    figures["after"] = (total - during) / len(latencies) * 1000
                    figures["postgres"] = elsewhere["postgres"] / len(latencies) * 1000
                    figures["client"] = elsewhere["client"] / len(latencies) * 1000
                    figures["idle"] = elsewhere["idle"] * 100
                    results[name].append(figures)
                    print(
                        f"  round {round_no + 1}: {name:10} {figures['rps']:7.0f} req/s"
                        f"  p50 {figures['p50']:6.1f} ms  p99 {figures['p99']:6.1f} ms"
                        f"  server CPU {figures['cpu']:5.2f} ms/req"
                        f" ({figures['after']:4.2f} after the load)"
                    )
        _report(results, concurrency, loop, rate)
    finally:
        bare.terminate()
        await bare.wait()
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):  # it may have ended already
                worker[0].terminate()
            await worker[0].wait()
        if profile:
            server.terminate(timeout=120)  # a clean exit, so the profiler writes its report
        server.close()
        await drop_schema(dsn, schema)


def _task_times_env(out: str | None) -> dict[str, str]:
    """What loads bench/_task_times into the server (only: it checks its argv)."""
    if out is None:
        return {}
    path = [str(ROOT / "bench" / "_task_times"), os.environ.get("PYTHONPATH", "")]
    return {
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "MENTORFLOW_BENCH_TASK_TIMES": str(Path(out).resolve()),
    }


def _report(
    results: dict[str, list[dict[str, float]]], concurrency: int, loop: str, rate: float | None
) -> None:
    keys = ("rps", "p50", "p99", "cpu", "cpu_s", "postgres", "client", "idle")
    medians = {
        name: {k: statistics.median(r[k] for r in runs) for k in keys}
        for name, runs in results.items()
    }
    base = medians["baseline"]["rps"]
    rounds = len(results["baseline"])
    offered = "as fast as answered" if rate is None else f"{rate:g} requests/s in all"
    print(f"\n{concurrency} clients, {offered}, medians of {rounds} rounds, loop {loop}")
    print(
        f"{'subject':12}{'req/s':>9}{'vs baseline':>13}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU ms/req':>12}{'CPU ms/s':>10}{'PG ms/req':>11}{'client':>8}{'idle':>6}"
    )
    for name, m in medians.items():
        print(
            f"{name:12}{m['rps']:>9.0f}{m['rps'] / base:>12.2f}x{m['p50']:>9.1f}{m['p99']:>9.1f}"
            f"{m['cpu']:>12.2f}{m['cpu_s']:>10.1f}{m['postgres']:>11.2f}{m['client']:>8.2f}"
            f"{m['idle']:>5.0f}%"
        )
    print(
        "(CPU: the server's, its worker process's too; PG ms/req and client: the"
        " database's and this client's CPU during the load; idle: the machine's)"
    )
    ours, bare = medians["mentorflow"], medians["baseline"]
    if rate is not None:
        cpu = ours["cpu_s"] / bare["cpu_s"]
        p99 = ours["p99"] / bare["p99"]
        print(f"mentorflow/baseline at {rate:g} requests/s: server CPU {cpu:.2f}x, p99 {p99:.2f}x")
        return
    print(
        f"mentorflow/baseline: req/s {ours['rps'] / bare['rps']:.2f}x (target >= 0.70x),"
        f" p99 {ours['p99'] / bare['p99']:.2f}x (target <= 1.50x)"
    )


async def _wait_bare(port: int) -> None:
    for _ in range(200):
        try:
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            await asyncio.sleep(0.05)
    raise RuntimeError("baseline server did not start")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--workers",
        choices=("in-process", "process", "none"),
        default="in-process",
        help="where the workers run: in the server (default), in a `mentorflow worker`"
        " process beside an API-only server (both processes' CPU counted), or nowhere",
    )
    parser.add_argument(
        "--no-workers",
        action="store_true",
        help="the same as --workers none: the API-only server alone",
    )
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    parser.add_argument(
        "--rate",
        type=float,
        metavar="R",
        help="send R requests/s in all on a schedule instead of as fast as answered"
        " (what the workers cost at a steady, light load: compare CPU ms/s)",
    )
    parser.add_argument("--profile", metavar="FILE", help="profile the server (pyinstrument)")
    parser.add_argument(
        "--task-times", metavar="FILE", help="the server loop's busy time by task (asyncio)"
    )
    args = parser.parse_args()
    if args.task_times and args.loop != "asyncio":
        parser.error("--task-times needs --loop asyncio")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    event_loop.run(
        main(
            args.seconds,
            args.rounds,
            args.concurrency,
            "none" if args.no_workers else args.workers,
            args.loop,
            args.profile,
            args.task_times,
            args.rate,
        ),
        args.loop,
    )
