"""Processes started in sessions of their own, and stopped with everything under them.

A :class:`Server` is one server process (``bentoml serve``, uvicorn) with its workers.
Every server is registered when it starts; :func:`stop_all` (also run at exit) stops
those still running, so none outlives the process that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connect_error(host: str, port: int, timeout: float = 1.0) -> OSError | None:
    """Why nothing answers on ``host:port``; None when something does."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    return connect_error(host, port, timeout) is None


# -- processes ------------------------------------------------------------------------------
def start_session(
    argv: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdout: int | IO[Any] | None = subprocess.PIPE,
    stderr: int | IO[Any] | None = subprocess.PIPE,
    text: bool = False,
) -> subprocess.Popen[Any]:
    """Start ``argv`` in a session (process group) of its own, reading nothing."""
    return subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        text=text,
        start_new_session=True,
    )


def descendants(pid: int) -> list[Any]:
    """Every live process under ``pid`` (psutil processes)."""
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def kill_tree(
    proc: subprocess.Popen[Any], sig: int = signal.SIGKILL, timeout: float = 10.0
) -> None:
    """Signal a process started in a session of its own, every process under it (BentoML's
    workers start their own sessions, so the group alone does not reach them) and its
    process group (stragglers whose parent died); wait up to ``timeout`` for them."""
    import psutil

    tree = descendants(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    for p in tree:
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)  # psutil checks the pid still names the same process
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    psutil.wait_procs(tree, timeout=timeout)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


# -- servers --------------------------------------------------------------------------------
_LIVE: list[Server] = []


class Server:
    """One server process (and its workers) in a session of its own, logging to ``log``."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        port: int,
        log: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._log_fh = log.open("w")
        self.started = time.monotonic()
        self.proc = start_session(argv, env, cwd, stdout=self._log_fh, stderr=subprocess.STDOUT)
        _LIVE.append(self)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, path: str = "/readyz", timeout: float = 120.0) -> float:
        """Poll ``path`` until it answers 200; return the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name}: server exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.25)
        raise TimeoutError(f"{self.name}: not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and its live descendants."""
        import psutil

        total = 0.0
        with contextlib.suppress(psutil.Error):
            for proc in [psutil.Process(self.proc.pid), *descendants(self.proc.pid)]:
                with contextlib.suppress(psutil.Error):
                    t = proc.cpu_times()
                    total += t.user + t.system
        return total

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 15.0) -> None:
        """Signal the server and every process under it, without stopping it for good
        (the log stays open, the server registered)."""
        kill_tree(self.proc, sig, timeout)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group (the server stops its own workers), then SIGKILL
        whatever is left: of the group, of the tree, and the workers it had at first."""
        import psutil

        workers = descendants(self.proc.pid)  # orphaned, they are no longer under it
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
        self.kill(signal.SIGKILL, timeout=5)
        for worker in workers:
            with contextlib.suppress(psutil.Error):
                worker.kill()
        self._log_fh.close()
        if self in _LIVE:
            _LIVE.remove(self)


def stop_all() -> None:
    """Stop every server still registered."""
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(stop_all)


@contextlib.contextmanager
def serving(server: Server, ready_path: str = "/readyz") -> Iterator[Server]:
    """Wait for ``server`` to be ready; stop it on the way out, whatever happens."""
    try:
        server.wait_ready(ready_path)
        yield server
    finally:
        server.stop()


def serve_bento(project: Path, tmp: Path, extra_env: dict[str, str] | None = None) -> Server:
    """`bentoml serve <bento tag>` (as `crispops serve` runs it) for the project's
    champion, the Bento its package step built; ready when returned."""
    from crispops.champion import read_champion
    from crispops.config import load_settings
    from crispops.serving.runtime import serve_argv, serving_env

    s = load_settings(project)
    champion = read_champion(s.champion_file)
    assert champion is not None, f"{s.champion_file}: no champion"
    port = free_port()
    env = {**os.environ, **serving_env(s), **(extra_env or {})}
    argv = serve_argv(champion.bento_tag, "127.0.0.1", port)
    server = Server(f"bento-{port}", argv, env, port, tmp / f"serve-{port}.log")
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server
