"""Real containers on this machine: find an engine, build the images, run the pipeline.

Docker when its daemon answers, else podman (``scripts/prepare-containers.sh`` installs
it on a machine like ours and serves its Docker-compatible API on a socket, which
``kfp.local.DockerRunner`` talks to).

- The components' image is built from the project's Dockerfile without network access:
  a wheelhouse is made first, on the host (``pip wheel -c constraints.txt``), then
  completed by the base image's own interpreter, whose environment markers may differ
  from the host's (Debian's Python 3.11.2 needs ``async-timeout`` for redis, 3.11.7 not).
- The champion's Bento image has the layout ``bentoml containerize`` gives it (user
  ``bentoml`` 1034, ``$BENTO_PATH``, BentoML's entrypoint), on top of the components'
  image, which already holds every package the Bento pins (both come from
  constraints.txt): nothing is downloaded, and the build checks the pins offline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crispops.config import COMPONENT_IMAGE, SPARK_COMPONENT_IMAGE, Settings, env
from crispops.errors import ContainerError

#: The base image scripts/prepare-containers.sh makes from Debian's packages.
LOCAL_BASE_IMAGE = "localhost/debian-py:bookworm"
#: The Dockerfile's default base image (from a registry).
PUBLIC_BASE_IMAGE = "python:3.11-slim-bookworm"
#: Where scripts/prepare-containers.sh serves podman's Docker-compatible API.
PODMAN_SOCKET = Path("/run/crispops-podman.sock")
#: The user `bentoml containerize` creates, and the model-service manifests run as.
BENTO_UID = 1034
BENTO_PATH = "/home/bentoml/bento"
#: Writable BentoML home of a read-only container (an emptyDir in the manifests).
BENTO_RUNTIME_HOME = "/home/bentoml/bentoml"
#: Fixed zip timestamps: an unchanged source gives the same wheel, so a rebuild of the
#: image reuses its cached layers.
SOURCE_DATE_EPOCH = "315532800"

HINT = "install docker, or run scripts/prepare-containers.sh (as root) to set up podman"

Log = Callable[[str], None]
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "-q", "-c", "constraints.txt"]


def _quiet(_: str) -> None:
    return None


# engines --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Engine:
    """A container CLI: docker or podman (same verbs and flags for what we use)."""

    name: str
    path: str

    def run(
        self,
        *args: str,
        timeout: float | None = None,
        cwd: Path | None = None,
        what: str | None = None,
    ) -> str:
        """Run one engine command; return its stdout, or raise ContainerError with the
        end of its output."""
        return _run([self.path, *args], timeout=timeout, cwd=cwd, what=what or args[0])

    def image_exists(self, image: str) -> bool:
        return _image_id(self, image) is not None

    def image_user(self, image: str) -> str:
        return self.run("image", "inspect", "--format", "{{.Config.User}}", image).strip()


def _build(
    engine: Engine,
    tag: str,
    context: Path,
    dockerfile: Path,
    base_image: str,
    *,
    target: str | None = None,
) -> str:
    """`<engine> build` with the host network; the image this tag named before is removed
    when the build replaced it (else every rebuild would leave a dangling 1.6 GB image)."""
    before = _image_id(engine, tag)
    extra = ["--target", target] if target else []
    engine.run(
        "build",
        "--network=host",
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        *extra,
        "-t",
        tag,
        "-f",
        str(dockerfile),
        str(context),
        what=f"{engine.name} build {tag}",
        timeout=3600,
    )
    if before and before != _image_id(engine, tag):
        with contextlib.suppress(ContainerError):  # still used by a container or image
            engine.run("rmi", before, what="remove the replaced image")
    return tag


def _image_id(engine: Engine, image: str) -> str | None:
    done = subprocess.run(
        [engine.path, "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _run(
    argv: list[str],
    *,
    timeout: float | None = None,
    cwd: Path | None = None,
    what: str = "command",
    extra_env: dict[str, str] | None = None,
) -> str:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env={**os.environ, **(extra_env or {})},
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ContainerError(f"{what}: no answer within {timeout:.0f} s ({argv[0]})") from None
    except OSError as exc:
        raise ContainerError(f"{what}: cannot run {argv[0]} ({exc})") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + "\n" + done.stderr).strip().splitlines()[-25:])
        raise ContainerError(f"{what} failed (exit status {done.returncode}):\n{tail}")
    return done.stdout


def _answers(argv: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False, ""
    return done.returncode == 0, done.stdout


def detect_engine() -> Engine:
    """A working docker daemon if there is one, else podman; ContainerError if neither."""
    docker = shutil.which("docker")
    docker_ok, server = (
        _answers([docker, "version", "--format", "{{json .Server}}"]) if docker else (False, "")
    )
    # A docker CLI talking to podman's socket works, but podman's own CLI builds better.
    if docker and docker_ok and "podman" not in server.lower():
        return Engine("docker", docker)
    podman = shutil.which("podman")
    if podman and _answers([podman, "info", "--format", "{{.Host.OCIRuntime.Name}}"])[0]:
        return Engine("podman", podman)
    if docker and docker_ok:
        return Engine("docker", docker)
    found = " and ".join(n for n, p in (("docker", docker), ("podman", podman)) if p)
    why = f"{found} found but not working" if found else "neither docker nor podman is installed"
    raise ContainerError(f"no container engine found ({why}): {HINT}")


# the components' image ----------------------------------------------------------------
def source_dir() -> Path:
    """The crispops checkout that holds the Dockerfile (the image is built from it)."""
    here = Path(__file__).resolve()
    for candidate in here.parents[1:4]:
        if (candidate / "Dockerfile").is_file() and (candidate / "constraints.txt").is_file():
            return candidate
    raise ContainerError(
        "the components' image is built from a crispops source checkout (Dockerfile, "
        f"constraints.txt); none found above {here.parent}"
    )


def ca_bundle() -> Path | None:
    """The host's CA bundle, for pip inside a container behind the same TLS proxy."""
    paths = ssl.get_default_verify_paths()
    names = [env("PIP_CERT"), env("SSL_CERT_FILE"), env("REQUESTS_CA_BUNDLE"), paths.cafile]
    names.append("/etc/ssl/certs/ca-certificates.crt")
    for name in names:
        if name and Path(name).is_file():
            return Path(name).resolve()
    return None


def pip_cache_dir() -> Path:
    """pip's cache for the base image's interpreter, kept between builds."""
    base = env("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "crispops" / "pip"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_base_image(engine: Engine) -> str:
    """The local Debian base image when the machine has one, else the public one."""
    return LOCAL_BASE_IMAGE if engine.image_exists(LOCAL_BASE_IMAGE) else PUBLIC_BASE_IMAGE


def build_wheelhouse(
    engine: Engine, source: Path, base_image: str, *, spark: bool = False, log: Log = _quiet
) -> Path:
    """build/wheelhouse: every wheel the components stage installs, for the base image's
    Python. build/wheelhouse-spark: with ``spark``, the wheels the [spark] extra adds
    (pyspark and Feast's Spark dependencies) and nothing the first holds; else empty.

    Each folder keeps a stamp of what its third-party wheels were made from
    (constraints.txt, pyproject.toml, the base image); while it holds, only the crispops
    wheel is made again (seconds, not the minute a full wheelhouse takes)."""
    build = source / "build"
    wheelhouse, extras = build / "wheelhouse", build / "wheelhouse-spark"
    shutil.rmtree(build / "lib", ignore_errors=True)  # setuptools' scratch
    base_id = _image_id(engine, base_image) or base_image
    stamp = _stamp(source, base_id, "")
    if not _fresh(wheelhouse, stamp):
        _wheels(engine, source, base_image, wheelhouse, [], log=log)
        _seal(wheelhouse, stamp)
    else:
        log("wheelhouse: third-party wheels unchanged; the crispops wheel made again")
        for old in wheelhouse.glob("crispops-*.whl"):
            old.unlink()
        _host_wheel(source, ["--no-deps", "--wheel-dir", str(wheelhouse), "."], "pip wheel", 600)
    if not spark:
        extras.mkdir(parents=True, exist_ok=True)  # the Dockerfile's spark stage copies it
    elif not _fresh(extras, spark_stamp := _stamp(source, base_id, "[spark]")):
        _wheels(engine, source, base_image, extras, [wheelhouse], extra="[spark]", log=log)
        have = {w.name for w in wheelhouse.iterdir()}
        for wheel in list(extras.iterdir()):
            if wheel.name in have:
                wheel.unlink()
        _seal(extras, spark_stamp)
    return wheelhouse


STAMP = ".made-from"


def _stamp(source: Path, base_id: str, extra: str) -> str:
    """What a wheelhouse's third-party wheels depend on (not the project's own code)."""
    import hashlib

    h = hashlib.sha256(f"{base_id}\n{extra}\n".encode())
    for name in ("constraints.txt", "pyproject.toml"):
        h.update((source / name).read_bytes())
    return h.hexdigest()


def _fresh(folder: Path, stamp: str) -> bool:
    path = folder / STAMP
    return path.is_file() and path.read_text().strip() == stamp


def _seal(folder: Path, stamp: str) -> None:
    (folder / STAMP).write_text(stamp + "\n")


def _host_wheel(source: Path, args: list[str], what: str, timeout: float) -> None:
    """``pip wheel -c constraints.txt ARGS`` on the host, in the source checkout, with
    fixed zip timestamps (an unchanged source gives the same wheel)."""
    _run(
        [*PIP_WHEEL, *args],
        cwd=source,
        what=what,
        timeout=timeout,
        extra_env={"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )


def _wheels(
    engine: Engine,
    source: Path,
    base_image: str,
    into: Path,
    also: list[Path],
    *,
    extra: str = "",
    log: Log,
) -> None:
    """pip wheel crispops (with ``extra``) and uv into ``into``: on the host, then
    completed by the base image's own interpreter (its markers may differ); wheels in
    ``also`` are found there instead of being built again."""
    shutil.rmtree(into, ignore_errors=True)  # no stale wheel may win a resolution
    into.mkdir(parents=True)
    links = [a for d in also for a in ("--find-links", str(d))]
    log(f"wheelhouse{extra}: pip wheel -c constraints.txt (host)")
    _host_wheel(source, [*links, "--wheel-dir", str(into), f".{extra}", "uv"], "pip wheel", 1800)
    wheels = sorted(into.glob("crispops-*.whl"))
    if not wheels:
        raise ContainerError(f"pip wheel wrote no crispops wheel into {into}")
    log(f"wheelhouse{extra}: completed for {base_image}'s Python")
    mounts = {into: "/wheelhouse", **{d: f"/also{i}" for i, d in enumerate(also)}}
    args = [
        "run",
        "--rm",
        "--network=host",
        "--user",
        f"{os.getuid()}:{os.getgid()}",
        "-e",
        "HOME=/tmp",
        "-e",
        "PIP_CACHE_DIR=/pip-cache",
        "-e",
        "PIP_DISABLE_PIP_VERSION_CHECK=1",
        *[a for d, m in mounts.items() for a in ("-v", f"{d}:{m}")],
        "-v",
        f"{pip_cache_dir()}:/pip-cache",
        "-v",
        f"{source / 'constraints.txt'}:/constraints.txt:ro",
    ]
    ca = ca_bundle()
    if ca is not None:
        args += ["-v", f"{ca}:/etc/crispops-ca.crt:ro", "-e", "PIP_CERT=/etc/crispops-ca.crt"]
    find = " ".join(f"--find-links {m}" for m in mounts.values())
    script = (
        f"python3 -m venv /tmp/venv && /tmp/venv/bin/pip wheel -q -c /constraints.txt {find} "
        f"--wheel-dir /wheelhouse '/wheelhouse/{wheels[0].name}{extra}' uv"
    )
    engine.run(*args, base_image, "sh", "-c", script, what="pip wheel in the base image")


def build_component_image(
    engine: Engine | None = None,
    *,
    source: Path | None = None,
    base_image: str | None = None,
    tag: str | None = None,
    spark: bool = False,
    log: Log = _quiet,
) -> str:
    """Build the image every pipeline component runs in; return its tag. With ``spark``,
    its Spark variant (``SPARK_COMPONENT_IMAGE``, the Dockerfile's ``spark`` stage): Java
    17, pyspark and the executor entrypoint on top of the components stage, for Spark
    projects only (the default image stays without them). Both stages come from one
    build, so the variant shares the default image's layers."""
    engine = engine or detect_engine()
    source = source or source_dir()
    base = base_image or default_base_image(engine)
    tag = tag or (SPARK_COMPONENT_IMAGE if spark else COMPONENT_IMAGE)
    build_wheelhouse(engine, source, base, spark=spark, log=log)
    target = "spark" if spark else "components"
    log(f"{engine.name} build {tag} (--target {target}, from {base})")
    return _build(engine, tag, source, source / "Dockerfile", base, target=target)


# the champion's Bento image -----------------------------------------------------------
BENTO_DOCKERFILE = f"""\
# The champion's Bento, written by `crispops images build`. The layout is the one
# `bentoml containerize` makes (user bentoml {BENTO_UID}, $BENTO_PATH, BentoML's entrypoint);
# the base is the components' image, which holds every package the Bento pins.
ARG BASE_IMAGE={COMPONENT_IMAGE}
FROM ${{BASE_IMAGE}}
USER root
ENV LANG=C.UTF-8 \\
    LC_ALL=C.UTF-8 \\
    PYTHONIOENCODING=UTF-8 \\
    PYTHONUNBUFFERED=1 \\
    PYTHONDONTWRITEBYTECODE=1 \\
    BENTO_PATH={BENTO_PATH} \\
    BENTOML_HOME=/home/bentoml/ \\
    BENTOML_CONTAINERIZED=true \\
    BENTOML_DO_NOT_TRACK=True \\
    OMP_NUM_THREADS=1
RUN groupadd --gid {BENTO_UID} bentoml \\
 && useradd --uid {BENTO_UID} --gid {BENTO_UID} --create-home --home-dir /home/bentoml bentoml
COPY --chown={BENTO_UID}:{BENTO_UID} . {BENTO_PATH}/
# Offline: fails if the image does not hold exactly the versions the Bento pins.
RUN pip install --no-index -r {BENTO_PATH}/env/python/requirements.txt \\
 && chmod +x {BENTO_PATH}/env/docker/entrypoint.sh
WORKDIR {BENTO_PATH}
USER {BENTO_UID}:{BENTO_UID}
EXPOSE 3000
ENTRYPOINT ["{BENTO_PATH}/env/docker/entrypoint.sh"]
CMD []
"""


def _bento_models(bento_dir: Path) -> list[str]:
    import yaml

    info = yaml.safe_load((bento_dir / "bento.yaml").read_text()) or {}
    tags = [m["tag"] for m in info.get("models") or [] if isinstance(m, dict) and "tag" in m]
    for service in info.get("services") or []:
        tags += [m["tag"] for m in service.get("models") or [] if "tag" in m]
    return sorted(set(tags))


def bento_context(settings: Settings, bento_tag: str, dest: Path) -> Path:
    """A build context: the Bento from the project's store, its models, our Dockerfile
    (as `bentoml containerize` assembles one, without importing BentoML)."""
    store = settings.bentoml_home
    name, version = bento_tag.split(":", 1)
    bento_dir = store / "bentos" / name / version
    if not (bento_dir / "bento.yaml").is_file():
        raise ContainerError(f"Bento {bento_tag} is not in {store / 'bentos'}")
    shutil.copytree(bento_dir, dest, ignore=shutil.ignore_patterns("__pycache__"))
    for model in _bento_models(bento_dir):
        model_name, model_version = model.split(":", 1)
        model_dir = store / "models" / model_name / model_version
        if not model_dir.is_dir():
            raise ContainerError(f"model {model} of Bento {bento_tag} is not in {store}")
        shutil.copytree(model_dir, dest / "models" / model_name / model_version)
        (dest / "models" / model_name / "latest").write_text(model_version)
    (dest / "Dockerfile.crispops").write_text(BENTO_DOCKERFILE)
    return dest


def build_bento_image(
    settings: Settings,
    engine: Engine | None = None,
    *,
    base_image: str = COMPONENT_IMAGE,
    tag: str | None = None,
    log: Log = _quiet,
) -> str:
    """Build the champion's Bento image on the components' image; return its tag."""
    from crispops.champion import read_champion
    from crispops.cluster.images import bento_image

    champion = read_champion(settings.champion_file)
    if champion is None:
        raise ContainerError(f"{settings.project_dir}: no champion yet; run `crispops run` first")
    engine = engine or detect_engine()
    if not engine.image_exists(base_image):
        raise ContainerError(f"{base_image} is not built: run `crispops images build` first")
    tag = tag or bento_image(settings.cluster.registry, champion.bento_tag)
    work = settings.state_path / "build"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bento-image-", dir=work) as tmp:
        ctx = bento_context(settings, champion.bento_tag, Path(tmp) / "context")
        log(f"{engine.name} build {tag} (Bento {champion.bento_tag})")
        return _build(engine, tag, ctx, ctx / "Dockerfile.crispops", base_image)


def bento_run_args(
    settings: Settings, image: str, *, port: int, name: str | None = None
) -> list[str]:
    """`<engine> run` arguments that serve a Bento image as the manifests do: non-root,
    read-only root filesystem, writable /tmp and BentoML home, no capabilities; the
    project's feature repo mounted read-only at its own path for /predict_entity."""
    from crispops.serving.runtime import serving_env

    envs = serving_env(settings)
    envs["BENTOML_HOME"] = BENTO_RUNTIME_HOME
    repo = str(settings.repo_path.resolve())
    args = ["run", "--rm", "-d"] + (["--name", name] if name else [])
    args += [
        "--network=host",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,mode=1777",
        "--tmpfs",
        f"{BENTO_RUNTIME_HOME}:rw,mode=1777",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "-v",
        f"{repo}:{repo}:ro",
    ]
    if settings.monitoring.sink == "parquet":  # the prediction log, on the host's disk
        log_dir = settings.monitoring_path.resolve()
        log_dir.mkdir(parents=True, exist_ok=True)
        args += ["-v", f"{log_dir}:{log_dir}:rw"]
    elif settings.monitoring.dsn_env in os.environ:  # the DSN by name: never on a command line
        args += ["-e", settings.monitoring.dsn_env]
    for key, value in sorted(envs.items()):
        args += ["-e", f"{key}={value}"]
    return [*args, image, "--host", settings.serving.host, "--port", str(port)]


# the commands for a registry ------------------------------------------------------------
def image_plan(settings: Settings, registry: str | None) -> list[tuple[str, list[str]]]:
    """(what, shell commands) that build and push both images for a registry."""
    from crispops.champion import read_champion
    from crispops.cluster.images import bento_image, component_image

    reg = registry or settings.cluster.registry
    spark = settings.feature_store.engine == "spark"
    component = settings.task_image if registry is None else component_image(reg, spark=spark)
    what = "components image (every pipeline step runs in it)"
    wheels = ["python -m pip wheel -c constraints.txt --wheel-dir build/wheelhouse . uv"]
    target = "components"
    if spark:
        what = "components image, Spark variant (Java 17, pyspark: every step and the driver)"
        wheels.append(
            "python -m pip wheel -c constraints.txt --find-links build/wheelhouse "
            "--wheel-dir build/wheelhouse-spark '.[spark]' uv"
        )
        target = "spark"
    plan = [
        (
            what,
            [
                *wheels,
                f"docker build --build-arg BASE_IMAGE={PUBLIC_BASE_IMAGE} --target {target} "
                f"-t {component} .",
                f"docker push {component}",
            ],
        )
    ]
    champion = read_champion(settings.champion_file)
    if champion is None:
        plan.append(("model service image", ["# no champion yet: run `crispops run` first"]))
        return plan
    image = bento_image(reg, champion.bento_tag)
    plan.append(
        (
            "model service image (the champion's Bento)",
            [
                f"BENTOML_HOME={settings.bentoml_home} bentoml containerize "
                f"{champion.bento_tag} --image-tag {image}",
                f"docker push {image}",
            ],
        )
    )
    return plan
