"""Real `bentoml serve` processes for tests: started, awaited, stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from crispops.champion import read_champion
from crispops.config import load_settings
from crispops.serving.runtime import serve_argv, serving_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, argv: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc = subprocess.Popen(
            argv, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not ready: {self.log.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the server and every process under it: BentoML's workers start their
        own sessions, so the process group alone does not reach them."""
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(sig)
        psutil.wait_procs(tree, timeout=15)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)
        self.kill(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def serve_bento(project: Path, tmp: Path, extra_env: dict[str, str] | None = None) -> Server:
    """`bentoml serve <bento tag>`: the Bento the pipeline's package step built."""
    s = load_settings(project)
    champion = read_champion(s.champion_file)
    assert champion is not None
    port = free_port()
    env = {**os.environ, **serving_env(s), **(extra_env or {})}
    argv = serve_argv(champion.bento_tag, "127.0.0.1", port)
    server = Server(argv, env, port, tmp / f"serve-{port}.log")
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server
