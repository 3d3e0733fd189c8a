"""The pipeline under ``kfp.local.DockerRunner``: every step in the components' image.

Docker when its daemon answers, else podman's Docker-compatible API
(``scripts/prepare-containers.sh`` serves it on a socket). kfp's runner removes each
step's container before reading its exit code, which podman answers with a 404 that
kfp counts as success; the client here keeps each container until then.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crispops.cluster.build import HINT, PODMAN_SOCKET
from crispops.config import COMPONENT_IMAGE, Settings, env
from crispops.errors import ContainerError


def _mount_roots(settings: Settings) -> list[Path]:
    """The host directories a step reads or writes, none inside another."""
    paths = {
        settings.project_dir.resolve(),
        settings.label_source_path.resolve().parent,
        settings.repo_path.resolve(),
        settings.state_path.resolve(),
    }
    roots: list[Path] = []
    for p in sorted(paths, key=lambda p: len(p.parts)):
        if not any(p.is_relative_to(r) for r in roots):
            roots.append(p)
    return roots


def docker_base_url() -> str | None:
    """DOCKER_HOST when set; else podman's socket from prepare-containers.sh when the
    default Docker socket is absent; None lets the docker SDK use its default."""
    if env("DOCKER_HOST"):
        return None
    if not Path("/var/run/docker.sock").exists() and PODMAN_SOCKET.exists():
        return f"unix://{PODMAN_SOCKET}"
    return None


@functools.cache
def _keeping_client() -> type[Any]:
    """A docker SDK client whose containers stay until their exit code is read.

    kfp.local.DockerRunner starts every step with ``auto_remove=True`` and asks for the
    exit code once the log stream ends. By then podman (always) or docker (when it is
    quicker than the client) has removed the container: the wait answers 404, which kfp
    reads as success, so a failed step would pass; or podman 4.3 answers 500, which kfp
    does not expect. With this client a step's container is kept until its exit code is
    read and removed right after, as `docker run --rm` does on its own.
    """
    import docker
    from docker.models.containers import Container, ContainerCollection

    class KeptContainer(Container):
        def wait(self, **kwargs: Any) -> Any:
            try:
                return super().wait(**kwargs)
            finally:
                with contextlib.suppress(docker.errors.APIError):
                    self.remove(force=True)

    class KeptContainers(ContainerCollection):
        model = KeptContainer

        def run(self, image: str, command: Any = None, **kwargs: Any) -> Any:
            kwargs["auto_remove"] = False
            return super().run(image, command, **kwargs)

    class KeepingClient(docker.DockerClient):
        @property
        def containers(self) -> KeptContainers:
            return KeptContainers(client=self)

    return KeepingClient


@contextlib.contextmanager
def docker_api(settings: Settings, run_id: str) -> Iterator[dict[str, Any]]:
    """Within: ``docker.from_env()`` (which DockerRunner calls per step) gives clients
    that keep each container until its exit code is read. Yields DockerRunner's
    arguments: the project's directories mounted at the same absolute paths (the
    settings name host paths), the host's user (outputs stay the user's files), the
    host network, and a label that finds leftovers afterwards."""
    try:
        import docker
    except ImportError:
        raise ContainerError(
            "the docker runner needs the docker Python package: pip install docker"
        ) from None
    from docker.types import Mount

    client_cls = _keeping_client()
    base_url = docker_base_url()

    def from_env(**kwargs: Any) -> Any:
        if base_url is None:
            return client_cls.from_env(**kwargs)
        return client_cls(base_url=base_url, timeout=kwargs.get("timeout", 600))

    where = base_url or env("DOCKER_HOST") or "the default Docker socket"
    try:
        probe = from_env()
        probe.ping()
    except docker.errors.DockerException as exc:
        raise ContainerError(f"no Docker API answers at {where} ({exc}): {HINT}") from None
    try:
        probe.images.get(COMPONENT_IMAGE)
    except docker.errors.ImageNotFound:
        raise ContainerError(
            f"the components' image {COMPONENT_IMAGE} is not built: run `crispops images build`"
        ) from None
    label = {"crispops.run": run_id}
    args: dict[str, Any] = {
        "mounts": [
            Mount(target=str(p), source=str(p), type="bind") for p in _mount_roots(settings)
        ],
        "user": f"{os.getuid()}:{os.getgid()}",
        "network_mode": "host",
        "environment": {"HOME": "/tmp", "BENTOML_DO_NOT_TRACK": "True"},
        "labels": label,
    }
    original = docker.from_env
    docker.from_env = from_env
    try:
        yield args
    finally:
        docker.from_env = original
        with contextlib.suppress(docker.errors.DockerException):
            for c in probe.containers.list(all=True, filters={"label": "crispops.run=" + run_id}):
                c.remove(force=True)
        probe.close()
