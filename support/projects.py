"""Small demo projects for tests and benchmarks: built, copied, trained fast, and read
back (their champion's model swapped for a weak one, the Bentos their store holds)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crispops.champion import Champion
    from crispops.config import Settings

ROOT = Path(__file__).resolve().parents[1]

#: Small demo data: a pipeline run on it takes ~25 s on 2 cores.
DEMO_DATA = {"customers": 200, "days": 150, "seed": 11}

#: Two quick candidates, one linear, one boosted, with a one-point search each.
FAST_CANDIDATES = [
    {"name": "linear", "estimator": "logistic_regression", "search": {"C": [0.5]}},
    {
        "name": "trees",
        "estimator": "hist_gradient_boosting",
        "search": {"max_iter": [60], "max_leaf_nodes": [15]},
    },
]


def copy_demo_project(dest: Path) -> Path:
    """The bundled demo's settings and feature definitions, without data or state."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "crispops.toml", dest / "crispops.toml")
    repo = dest / "feature_repo"
    repo.mkdir(exist_ok=True)
    for name in ("credit.py", "feature_store.yaml", "feature_store.cluster.yaml", ".feastignore"):
        shutil.copy(ROOT / "feature_repo" / name, repo / name)
    return dest


def make_demo_project(dest: Path) -> Path:
    """The demo project on :data:`DEMO_DATA`, its features applied and materialized."""
    from crispops.project.demo_data import generate
    from crispops.steps.features import apply, materialize

    project = copy_demo_project(dest)
    generate(project / "feature_repo" / "data", **DEMO_DATA)
    apply(project / "feature_repo")
    materialize(project / "feature_repo")
    return project


def copy_project(src: Path, dest: Path, keep_state: bool = True, materialized: bool = True) -> Path:
    """A private copy of a project: its own registry and, with ``materialized``, its own
    online store. A registry is never copied: it records its online tables' absolute
    paths, and applying the copy would drop the original's tables. Without
    ``keep_state`` the copy has no champion, models or runs either."""
    from crispops.steps.features import apply, materialize

    ignore = ["*.db", "runs"] + ([] if keep_state else [".crispops"])
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*ignore))
    apply(dest / "feature_repo")
    if materialized:
        materialize(dest / "feature_repo")
    return dest


def fast_settings(
    project: Path, candidates: list[dict[str, Any]] | None = None, **training: Any
) -> Settings:
    """The project's settings with quick candidates (:data:`FAST_CANDIDATES` unless
    given) and any other ``training`` settings overridden."""
    from crispops.config import load_settings

    base = load_settings(project)
    merged = {**base.training.model_dump(), "candidates": candidates or FAST_CANDIDATES, **training}
    return load_settings(project, training=merged)


def weaken_champion(project: Path, model_file: Path | None = None) -> Champion:
    """Swap the serving champion's model for a constant one (AUC 0.5), written to
    ``model_file`` (default: beside the project), so that any trained candidate beats
    it; return the new pointer."""
    import joblib
    import pandas as pd
    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import Pipeline

    from crispops.champion import Champion, read_champion, write_champion
    from crispops.config import load_settings

    s = load_settings(project)
    current = read_champion(s.champion_file)
    assert current is not None, f"{s.champion_file}: no champion"
    model = joblib.load(current.model_file)
    dummy = Pipeline([("prep", model.named_steps["prep"]), ("model", DummyClassifier())])
    labels = pd.read_parquet(s.label_source_path)
    dummy.named_steps["model"].fit([[0]] * len(labels), labels[s.data.label])
    model_file = model_file or project.parent / f"weak-{project.name}.joblib"
    joblib.dump(dummy, model_file)
    champion = Champion(**{**current.to_dict(), "model_file": str(model_file), "score": 0.5})
    write_champion(s.champion_file, champion)
    return champion


def bentos(project: Path) -> set[str]:
    """The tags of the Bentos in the project's BentoML store."""
    from crispops.config import load_settings

    root = load_settings(project).bentoml_home / "bentos"
    return {f"{p.parent.name}:{p.name}" for p in root.glob("*/*") if p.is_dir()}


def package_challenger(project: Path, weak: bool = True) -> dict[str, str]:
    """Package a challenger beside the project's champion, as a run the gate kept out
    would: its model saved with the champion's metadata, its Bento built, the registry
    entry ``challenger``. With ``weak`` the model is the champion's preprocessing before
    a constant classifier (every score the same: the arms' distributions diverge);
    without, a copy of the champion's model under its own tag. Runs in a subprocess
    (BentoML reads its home once per process); returns ``model_tag`` and ``bento_tag``."""
    import json
    import os
    import subprocess
    import sys

    code = "import json, sys; from support.projects import _package_challenger; " + (
        "print(json.dumps(_package_challenger(sys.argv[1], sys.argv[2] == '1')))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    out = subprocess.run(
        [sys.executable, "-c", code, str(project), "1" if weak else "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, str] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _package_challenger(project: str, weak: bool) -> dict[str, str]:
    import tempfile

    import joblib
    import pandas as pd
    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import Pipeline

    from crispops import registry
    from crispops.champion import read_champion
    from crispops.config import load_settings
    from crispops.serving import packaging

    s = load_settings(Path(project))
    packaging.bentoml_home(s.bentoml_home)
    import bentoml

    champion = read_champion(s.champion_file)
    assert champion is not None, f"{s.champion_file}: no champion"
    info = bentoml.models.get(champion.model_tag).info
    model = joblib.load(packaging.model_path(champion.model_tag))
    if weak:
        labels = pd.read_parquet(s.label_source_path)
        constant = DummyClassifier().fit([[0]] * len(labels), labels[s.data.label])
        model = Pipeline([("prep", model.named_steps["prep"]), ("model", constant)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / packaging.MODEL_FILE
        joblib.dump(model, path)
        name = champion.model_tag.split(":", 1)[0]
        tags = {**info.labels, "stage": "challenger"}
        model_tag = packaging.save_model(name, path, labels=tags, metadata=dict(info.metadata))
    bento_tag = packaging.build_bento(
        model_tag, name=champion.bento_tag.split(":", 1)[0], labels=tags, work_dir=s.state_path
    )
    registry.register(
        s.models_file,
        registry.ModelEntry(
            model_tag=model_tag,
            bento_tag=bento_tag,
            status="challenger",
            metric=champion.metric,
            score=0.5 if weak else champion.score,
            candidate="constant" if weak else champion.candidate,
            created_at=registry.now(),
            verdict="kept_champion",
            reason="packaged by the tests",
        ),
    )
    return {"model_tag": model_tag, "bento_tag": bento_tag}
