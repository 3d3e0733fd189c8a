"""Shared benchmark plumbing: signals, the `hey` load generator, timings.

Servers are ``support.servers.Server``: each in a session of its own and registered,
so ``support.servers.stop_all()`` ends them all. Benchmarks call it in ``finally`` and
:func:`interrupt_on_signals` turns SIGTERM/SIGHUP into KeyboardInterrupt, so servers
never outlive a run, whether it ends normally, on an error or on Ctrl-C.
"""

from __future__ import annotations

import math
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from support.servers import Server


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_on_signals() -> None:
    """SIGINT (even where a shell ignored it), SIGTERM and SIGHUP unwind like Ctrl-C, so
    ``finally`` blocks stop the servers."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)


# -- the load generator ---------------------------------------------------------------------
@dataclass
class LoadResult:
    """One `hey` run: throughput, latency percentiles, and what went wrong."""

    concurrency: int
    duration_s: float
    requests: int = 0
    rps: float = math.nan
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    status: dict[int, int] = field(default_factory=dict)
    transport_errors: dict[str, int] = field(default_factory=dict)
    # CPU use during the run, as % of all cores: the server's, hey's, everyone else's.
    server_cpu_pct: float = math.nan
    hey_cpu_pct: float = math.nan
    other_cpu_pct: float = math.nan
    server_cpu_s: float = math.nan  # the server's CPU seconds over the run (all processes)

    @property
    def answered(self) -> int:
        """2xx answers."""
        return sum(n for code, n in self.status.items() if 200 <= code < 300)

    @property
    def errors(self) -> int:
        """Transport errors plus non-2xx answers."""
        bad = sum(n for code, n in self.status.items() if not 200 <= code < 300)
        return bad + sum(self.transport_errors.values())


_PCT = re.compile(r"^\s*(\d+)% in ([\d.]+) secs", re.M)
_STATUS = re.compile(r"^\s*\[(\d+)\]\s+(\d+) responses", re.M)
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_SLOWEST = re.compile(r"Slowest:\s+([\d.]+) secs")


def parse_hey(text: str, concurrency: int, duration_s: float) -> LoadResult:
    """Read hey's summary (latencies are printed in seconds, to 0.1 ms)."""
    out = LoadResult(concurrency=concurrency, duration_s=duration_s)
    if m := _RPS.search(text):
        out.rps = float(m.group(1))
    pcts = {int(p): float(v) * 1000 for p, v in _PCT.findall(text)}
    out.status = {int(c): int(n) for c, n in _STATUS.findall(text)}
    slowest = float(m.group(1)) * 1000 if (m := _SLOWEST.search(text)) else math.nan
    # hey omits a percentile its sample cannot reach (p99 of < 100 answers): the
    # slowest answer is that sample's p99.
    answered = sum(out.status.values())
    out.p50_ms = pcts.get(50, math.nan)
    out.p99_ms = pcts.get(99, slowest if answered else math.nan)
    _, _, errors = text.partition("Error distribution:")
    for line in errors.splitlines():
        if m := re.match(r"^\s*\[(\d+)\]\s+(.*)$", line):
            out.transport_errors[m.group(2).strip()] = int(m.group(1))
    out.requests = sum(out.status.values()) + sum(out.transport_errors.values())
    return out


def hey_binary() -> str:
    path = shutil.which("hey")
    if path is None:
        raise FileNotFoundError("`hey` is not installed (Debian: apt-get install hey)")
    return path


def pinned(cpus: str | None) -> list[str]:
    """The argv prefix that runs a command on the cores ``cpus`` (taskset's list)."""
    if not cpus:
        return []
    taskset = shutil.which("taskset")
    if taskset is None:
        raise FileNotFoundError("`taskset` is not installed (Debian: util-linux)")
    return [taskset, "--cpu-list", cpus]


def _busy_seconds() -> float:
    import psutil

    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0))


def _own_seconds() -> tuple[float, float]:
    """CPU seconds of this process and of its waited-for children (hey)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def machine_busy_pct(interval: float = 1.0) -> float:
    """CPU use of the whole machine over ``interval`` seconds, % of all cores."""
    import psutil

    return float(psutil.cpu_percent(interval=interval))


def wait_quiet(limit_pct: float, max_wait_s: float) -> float:
    """Wait (at most ``max_wait_s``) until the machine's CPU use drops under ``limit_pct``
    while nothing of ours runs; return the last reading."""
    deadline = time.monotonic() + max_wait_s
    busy = machine_busy_pct()
    while busy >= limit_pct and time.monotonic() < deadline:
        busy = machine_busy_pct()
    return busy


def hey_argv(
    url: str, body: Path, duration_s: float, timeout_s: float, cpus: str | None, *extra: str
) -> list[str]:
    """hey POSTing ``body`` as JSON to ``url`` for ``duration_s`` seconds, with ``extra``."""
    return [
        *pinned(cpus),
        hey_binary(),
        "-z",
        f"{duration_s:g}s",
        *extra,
        "-t",
        f"{timeout_s:g}",
        "-m",
        "POST",
        "-T",
        "application/json",
        "-D",
        str(body),
        url,
    ]


def run_hey(
    url: str,
    body: Path,
    concurrency: int,
    duration_s: float,
    timeout_s: float = 10.0,
    server: Server | None = None,
    cpus: str | None = None,
) -> LoadResult:
    """POST ``body`` to ``url`` from ``concurrency`` connections for ``duration_s`` seconds.

    With ``server``, also account the CPU time of the run: the server's, hey's, and
    the rest of the machine's (other processes: noise in the figures). With ``cpus``
    (taskset's list, "1"), hey runs on those cores only.
    """
    argv = hey_argv(url, body, duration_s, timeout_s, cpus, "-c", str(concurrency))
    busy0, (self0, kids0) = _busy_seconds(), _own_seconds()
    server0 = server.cpu_seconds() if server else 0.0
    started = time.monotonic()
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=duration_s + timeout_s + 30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    wall = time.monotonic() - started
    busy1, (self1, kids1) = _busy_seconds(), _own_seconds()
    server1 = server.cpu_seconds() if server else 0.0
    if done.returncode != 0:
        raise RuntimeError(f"hey failed ({done.returncode}): {done.stderr[-2000:]}")
    out = parse_hey(done.stdout, concurrency, duration_s)
    if server is not None:
        capacity = wall * (os.cpu_count() or 1) / 100
        out.server_cpu_s = server1 - server0
        out.server_cpu_pct = (server1 - server0) / capacity
        out.hey_cpu_pct = (kids1 - kids0) / capacity
        rest = (busy1 - busy0) - (server1 - server0) - (kids1 - kids0) - (self1 - self0)
        out.other_cpu_pct = max(0.0, rest / capacity)
    return out


def run_paced(
    servers: list[Server],
    path: str,
    body: Path,
    concurrency: int,
    duration_s: float,
    rate: float,
    cpus: str | None = None,
) -> list[LoadResult]:
    """Each server loaded at the same time, ``rate`` requests a second on average
    arriving at random (``bench.openloop``: open loop, a Poisson process of its own
    for each server) over at most ``concurrency`` connections: traffic below the
    servers' capacity, as it arrives on a cluster. Latencies are counted from when each
    request was due."""
    import json

    import numpy as np

    urls = [s.url + path for s in servers]
    argv = [
        *pinned(cpus),
        sys.executable,
        "-m",
        "bench.openloop",
        "--rate",
        f"{rate:.4f}",
        "--duration",
        f"{duration_s:g}",
        "--connections",
        str(concurrency),
        "--body",
        str(body),
        "--seed",
        str(time.monotonic_ns() % 1_000_000),
        *urls,
    ]
    before = [s.cpu_seconds() for s in servers]
    started = time.monotonic()
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=duration_s + 60,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[1],
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"bench.openloop failed ({done.returncode}): {done.stderr[-2000:]}")
    answers = json.loads(done.stdout)
    out = []
    for server, url, cpu0 in zip(servers, urls, before, strict=True):
        got = answers[url]
        r = LoadResult(concurrency=concurrency, duration_s=duration_s)
        r.status = {int(k): v for k, v in got["status"].items()}
        r.transport_errors = dict(got["errors"])
        latencies = got["latencies_ms"]
        r.requests = len(latencies)
        r.rps = r.requests / duration_s
        if latencies:
            r.p50_ms, r.p99_ms = (float(x) for x in np.percentile(latencies, [50, 99]))
        r.server_cpu_s = server.cpu_seconds() - cpu0
        r.server_cpu_pct = r.server_cpu_s / (wall * (os.cpu_count() or 1) / 100)
        out.append(r)
    return out


# -- in-process timings ----------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    n: int
    p50_ms: float
    p99_ms: float


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear interpolation, as numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def time_calls(fn: Callable[[], object], n: int, warmup: int = 20) -> Timing:
    """Call ``fn`` ``warmup`` + ``n`` times; percentiles of the last ``n`` in milliseconds."""
    for _ in range(warmup):
        fn()
    laps: list[float] = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        laps.append((time.perf_counter() - started) * 1000)
    return Timing(n=n, p50_ms=statistics.median(laps), p99_ms=quantile(laps, 0.99))


def consoles(width: int) -> tuple[Console, Console]:
    """(stdout, stderr) consoles; a redirected stdout keeps ``width`` columns, so a
    pasted table keeps its shape."""
    out = Console()
    return (out if out.is_terminal else Console(width=width)), Console(stderr=True)
