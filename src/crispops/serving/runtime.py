"""The model server's runtime contract: the environment a server process reads.

A Bento holds no crispops.toml: `crispops serve`, the container run and the
Deployment set ``CRISPOPS_SERVING__<KEY>`` for each key in ``RUNTIME_KEYS`` (plus
BentoML's home and one thread per numeric library), and the server reads them back
with :func:`crispops.config.serving_runtime`. This module writes that environment;
``config`` is where it is read.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from crispops.config import ENV_PREFIX, serving_runtime
from crispops.errors import UserError

if TYPE_CHECKING:
    from crispops.config import Settings

__all__ = [
    "MONITORING_KEYS",
    "RUNTIME_KEYS",
    "THREAD_ENV",
    "env_name",
    "serve_argv",
    "serving_env",
    "serving_runtime",
    "start_server",
    "stop_server",
    "wait_ready",
]

#: The serving settings a server process reads from its environment.
RUNTIME_KEYS = (
    "workers",
    "max_batch_size",
    "max_latency_ms",
    "max_batch_wait_ms",
    "max_concurrency",
    "missing_entity",
    "feature_repo",
    "feature_store_yaml",
)

#: The monitoring settings a server process reads (CRISPOPS_MONITORING__<KEY>): how it
#: logs predictions. The DSN itself is never among them: the server reads it from the
#: variable ``dsn_env`` names (a Secret on a cluster), passed through as it is.
MONITORING_KEYS = (
    "log_predictions",
    "sink",
    "path",
    "dsn_env",
    "table_prefix",
    "queue_size",
    "batch_size",
    "flush_seconds",
)

#: One thread per numeric library: workers share the cores (see DESIGN.md).
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def env_name(key: str, section: str = "serving") -> str:
    """``max_batch_size`` -> ``CRISPOPS_SERVING__MAX_BATCH_SIZE``."""
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def serving_env(settings: Settings) -> dict[str, str]:
    """The environment of a model server for this project (what serving_runtime reads)."""
    sv = settings.serving
    values = sv.model_dump(include=set(RUNTIME_KEYS))
    values["feature_repo"] = settings.repo_path
    if sv.online_store == "cluster":
        values["feature_store_yaml"] = settings.feature_store.cluster_config
    envs = {
        "BENTOML_HOME": str(settings.bentoml_home),
        "BENTOML_DO_NOT_TRACK": "True",
        **THREAD_ENV,
    }
    for key in RUNTIME_KEYS:
        value = values.get(key)
        if value is not None:
            envs[env_name(key)] = str(value)
    mon = settings.monitoring.model_dump(include=set(MONITORING_KEYS))
    mon["path"] = settings.monitoring_path  # absolute: the server's cwd is not the project
    for key in MONITORING_KEYS:
        envs[env_name(key, "monitoring")] = (
            str(mon[key]).lower() if key == "log_predictions" else str(mon[key])
        )
    return envs


def serve_argv(bento_tag: str, host: str, port: int) -> list[str]:
    """The `bentoml serve` command line for a Bento."""
    return [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        bento_tag,
        "--host",
        host,
        "--port",
        str(port),
    ]


def start_server(
    argv: list[str], env: dict[str, str], stdout: Any = None, stderr: Any = None
) -> subprocess.Popen[bytes]:
    """A model server in a session of its own (a stop then reaches BentoML's workers,
    which start their own processes), reading nothing from stdin."""
    return subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float, what: str) -> None:
    """Until ``url``/readyz answers 200; a UserError naming ``what`` if the process exits
    first or ``timeout`` seconds pass."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise UserError(f"{what} exited with {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise UserError(f"{what} on {url} was not ready within {timeout:.0f} s")
        time.sleep(0.5)


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM to the server's session (its prediction log flushes), SIGKILL after
    ``timeout`` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
