"""Save a model in BentoML's model store and build a Bento around it.

BENTOML_HOME must be set before bentoml is imported; callers use
``bentoml_home(path)`` first.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import crispops

MODEL_FILE = "model.joblib"

#: Distributions the Bento needs at run time, pinned to the versions that trained it.
RUNTIME_PACKAGES = (
    "bentoml",
    "scikit-learn",
    "pandas",
    "numpy",
    "pyarrow",
    "joblib",
    "threadpoolctl",
    "pydantic",
    "pydantic-settings",
    "feast",
    "redis",
    "psycopg",
    "sniffio",  # httpx/httpcore's clients: see pyproject.toml
    "httptools",  # the router's client for the challenger (serving/peer.py)
)


def bentoml_home(path: Path) -> None:
    """Point BentoML at the project's store (before the first `import bentoml`)."""
    path.mkdir(parents=True, exist_ok=True)
    os.environ["BENTOML_HOME"] = str(path)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")


def model_name(feature_service: str) -> str:
    """A BentoML-safe model name derived from the feature service."""
    return re.sub(r"[^a-z0-9_.-]+", "-", feature_service.lower()).strip("-.") or "model"


def save_model(
    name: str,
    model_path: Path,
    *,
    labels: dict[str, str],
    metadata: dict[str, Any],
    extra_files: dict[str, Path] | None = None,
) -> str:
    """Copy a fitted model (and its reports) into the store; return the pinned tag."""
    import bentoml

    with bentoml.models.create(name, labels=labels, metadata=metadata) as bento_model:
        shutil.copyfile(model_path, bento_model.path_of(MODEL_FILE))
        for target, source in (extra_files or {}).items():
            shutil.copyfile(source, bento_model.path_of(target))
    return str(bento_model.tag)


def model_path(tag: str) -> Path:
    import bentoml

    return Path(bentoml.models.get(tag).path_of(MODEL_FILE))


def _requirements() -> list[str]:
    pins = []
    for dist in RUNTIME_PACKAGES:
        try:
            pins.append(f"{dist}=={md.version(dist)}")
        except md.PackageNotFoundError:
            continue
    return pins


ENTRY = '''"""The champion's service entry point, written by `crispops package`."""

from crispops.serving.service import make_service

CrispopsModel = make_service({model_tag!r}, bento_tag={bento_tag!r})
'''


def build_bento(model_tag: str, *, name: str, labels: dict[str, str], work_dir: Path) -> str:
    """Build a Bento serving ``model_tag``; return its pinned tag.

    The build context is a fresh directory holding the two-line entry module and a
    copy of the crispops package, so the Bento is self-contained and BentoML's home
    is never inside it.
    """
    import bentoml

    version = model_tag.split(":", 1)[1]
    bento_tag = f"{name}:{version}"
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = Path(tempfile.mkdtemp(prefix="bento-ctx-", dir=work_dir))
    try:
        src = Path(crispops.__file__).resolve().parent
        shutil.copytree(src, ctx / "crispops", ignore=shutil.ignore_patterns("__pycache__"))
        (ctx / "service.py").write_text(ENTRY.format(model_tag=model_tag, bento_tag=bento_tag))
        bento = bentoml.bentos.build(
            "service:CrispopsModel",
            name=name,
            version=version,
            labels=labels,
            description=f"crispops champion {model_tag}",
            include=["service.py", "crispops/**"],
            python={"packages": _requirements(), "lock_packages": False},
            build_ctx=str(ctx),
        )
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    return str(bento.tag) if bento.tag else bento_tag
