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
