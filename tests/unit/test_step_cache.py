"""The step cache's keys, entries and housekeeping, against real kfp artifacts and a real
demo project's files (no pipeline run: tests/integration/test_cache.py runs those)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kfp.dsl import Artifact, Dataset, Metrics

from crispops.config import Settings, load_settings
from crispops.orchestration import cache as step_cache
from crispops.orchestration.cache import StepCache, clear, entries, evict
from support.projects import copy_demo_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from crispops.project.demo_data import generate

    project = copy_demo_project(tmp_path_factory.mktemp("p") / "project")
    generate(project / "feature_repo" / "data", customers=40, days=90, seed=3)
    return project


@pytest.fixture()
def settings(project: Path, tmp_path: Path) -> Settings:
    return load_settings(project, state_dir=str(tmp_path / "state"))


def ingest_key(s: Settings) -> str:
    return StepCache(s, Path("/unused")).compute_key(
        "comp-ingest", "img", ["python", "-m", "x"], {"settings": "{}"}
    )


def output(tmp: Path, name: str, content: bytes, kind: type[Artifact] = Dataset) -> Artifact:
    path = tmp / "task" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    art = kind(name=name, uri=str(path), metadata={"rows": len(content)})
    return art


def test_ingest_key_is_stable_for_unchanged_data(settings: Settings) -> None:
    assert ingest_key(settings) == ingest_key(settings)


def test_source_parquet_edited_in_place_changes_the_key(settings: Settings) -> None:
    """Same path, same size class, even the old mtime put back: the content digest tells."""
    before = ingest_key(settings)
    source = settings.repo_path / "data" / "account_activity.parquet"
    st = source.stat()
    original = source.read_bytes()
    df = pd.read_parquet(source)
    df.loc[df.index[0], "avg_balance"] += 1.0
    df.to_parquet(source)
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    try:
        assert ingest_key(settings) != before
    finally:
        source.write_bytes(original)
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ingest_key(settings) == before


def test_changed_label_file_changes_the_key(settings: Settings) -> None:
    before = ingest_key(settings)
    labels = settings.label_source_path
    original = labels.read_bytes()
    df = pd.read_parquet(labels)
    df.iloc[:5].to_parquet(labels)
    try:
        assert ingest_key(settings) != before
    finally:
        labels.write_bytes(original)


def test_changed_feature_definition_changes_the_key(settings: Settings) -> None:
    before = ingest_key(settings)
    definitions = settings.repo_path / "credit.py"
    original = definitions.read_text()
    definitions.write_text(original + "\n# a changed definition\n")
    try:
        assert ingest_key(settings) != before
    finally:
        definitions.write_text(original)


def test_a_table_source_is_never_cached(settings: Settings, tmp_path: Path) -> None:
    """A repo whose offline store reads tables (here PostgreSQL) and names a table
    source: nothing cheap tells whether the table grew, so ingest is never cached."""
    extra = settings.repo_path / "warehouse.py"
    extra.write_text("from feast.infra.offline_stores.contrib import PostgreSQLSource\n")
    yaml_path = settings.repo_path / "feature_store.yaml"
    original = yaml_path.read_text()
    yaml_path.write_text(original.replace("type: duckdb", "type: postgres"))
    try:
        assert "type: postgres" in yaml_path.read_text()
        assert step_cache.data_fingerprint(settings) is None
        cache = StepCache(settings, tmp_path / "run")
        key = cache.compute_key("comp-ingest", "img", [], {})
        cache.put(key, {"dataset": output(tmp_path, "dataset", b"rows")})
        assert entries(settings.cache_path) == []
    finally:
        extra.unlink()
        yaml_path.write_text(original)


def test_a_table_source_the_offline_store_cannot_read_keeps_the_cache(
    settings: Settings,
) -> None:
    """The bundled demo's definitions name SparkSource in a branch taken only on Spark:
    on DuckDB, which reads files only, its files are still fingerprinted."""
    assert "SparkSource" in (settings.repo_path / "credit.py").read_text()
    printed = step_cache.data_fingerprint(settings)
    assert printed is not None
    assert any(line["path"].endswith("account_activity.parquet") for line in printed["files"])


def test_step_setting_and_code_version_change_the_key(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = StepCache(settings, Path("/unused"))
    base = cache.compute_key("comp-train", "img", ["cmd"], {"settings": '{"cv_folds": 3}'})
    assert base == cache.compute_key("comp-train", "img", ["cmd"], {"settings": '{"cv_folds": 3}'})
    assert base != cache.compute_key("comp-train", "img", ["cmd"], {"settings": '{"cv_folds": 4}'})
    monkeypatch.setattr(step_cache, "_code", "0.1.0+another")
    assert base != cache.compute_key("comp-train", "img", ["cmd"], {"settings": '{"cv_folds": 3}'})


def test_input_artifacts_key_on_content_not_on_their_run(
    settings: Settings, tmp_path: Path
) -> None:
    cache = StepCache(settings, Path("/unused"))
    a = output(tmp_path / "run-a", "train", b"same rows")
    b = output(tmp_path / "run-b", "train", b"same rows")
    c = output(tmp_path / "run-c", "train", b"other rows")
    key = cache.compute_key("comp-split", "img", [], {"data": a})
    assert key == cache.compute_key("comp-split", "img", [], {"data": b})
    assert key != cache.compute_key("comp-split", "img", [], {"data": c})


def roundtrip(settings: Settings, tmp_path: Path) -> tuple[StepCache, str, dict[str, Any]]:
    cache = StepCache(settings, tmp_path / "run-1")
    key = cache.compute_key("comp-evaluate", "img", [], {"p": 1})
    metrics = Metrics(name="metrics", uri=str(tmp_path / "task" / "metrics"))
    metrics.log_metric("auc", 0.81)
    outputs = {
        "evaluation": output(tmp_path, "evaluation", b'{"auc": 0.81}'),
        "metrics": metrics,  # metadata only: its file is never written
        "Output": True,
    }
    cache.put(key, outputs)
    return cache, key, outputs


def test_a_hit_restores_outputs_and_metadata(settings: Settings, tmp_path: Path) -> None:
    _, key, outputs = roundtrip(settings, tmp_path)
    later = StepCache(settings, tmp_path / "run-2")
    later.compute_key("comp-evaluate", "img", [], {"p": 1})
    got = later.get(key)
    assert got is not None
    assert got["Output"] is True
    restored = Path(got["evaluation"].path)
    assert restored.is_relative_to(tmp_path / "run-2")
    assert restored.read_bytes() == b'{"auc": 0.81}'
    assert got["evaluation"].metadata == outputs["evaluation"].metadata
    assert got["metrics"].metadata == {"auc": 0.81}
    assert [h.task for h in later.hits] == ["evaluate"]


@pytest.mark.parametrize("damage", ["truncated entry", "missing file", "changed file", "no entry"])
def test_a_damaged_entry_is_a_miss(settings: Settings, tmp_path: Path, damage: str) -> None:
    cache, key, _ = roundtrip(settings, tmp_path)
    entry = settings.cache_path / "entries" / key
    if damage == "truncated entry":
        text = (entry / "entry.json").read_text()
        (entry / "entry.json").write_text(text[: len(text) // 2])
    elif damage == "missing file":
        (entry / "files" / "evaluation").unlink()
    elif damage == "changed file":
        (entry / "files" / "evaluation").write_bytes(b'{"auc": 0.99}')
    else:
        (entry / "entry.json").unlink()
    cache.compute_key("comp-evaluate", "img", [], {"p": 1})
    assert cache.get(key) is None


def test_package_is_never_cached(settings: Settings, tmp_path: Path) -> None:
    cache = StepCache(settings, tmp_path / "run")
    key = cache.compute_key("comp-package", "img", [], {})
    cache.put(key, {"bento": output(tmp_path, "bento", b"tag")})
    assert cache.get(key) is None
    assert entries(settings.cache_path) == []


def test_concurrent_writers_and_readers_leave_one_good_entry(
    settings: Settings, tmp_path: Path
) -> None:
    """Two runs of one project finishing the same step at once: one entry wins whole,
    and a reader meanwhile gets either a miss or the whole outputs, never an error."""
    key = StepCache(settings, tmp_path).compute_key("comp-split", "img", [], {"x": 1})
    errors: list[BaseException] = []
    seen: list[bytes] = []

    def writer(i: int) -> None:
        try:
            cache = StepCache(settings, tmp_path / f"w{i}")
            cache.compute_key("comp-split", "img", [], {"x": 1})
            cache.put(key, {"train": output(tmp_path / f"w{i}", "train", b"x" * 200_000)})
        except BaseException as exc:
            errors.append(exc)

    def reader(i: int) -> None:
        try:
            cache = StepCache(settings, tmp_path / f"r{i}")
            for _ in range(20):
                cache.compute_key("comp-split", "img", [], {"x": 1})
                got = cache.get(key)
                if got is not None:
                    seen.append(Path(got["train"].path).read_bytes())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    threads += [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(s == b"x" * 200_000 for s in seen)
    (entry,) = entries(settings.cache_path)
    assert entry.ok and entry.key == key
    assert list((settings.cache_path / "tmp").iterdir()) == []


def test_eviction_drops_the_least_recently_used(settings: Settings, tmp_path: Path) -> None:
    cache = StepCache(settings, tmp_path / "run")
    keys = []
    for i in range(3):
        key = cache.compute_key("comp-split", "img", [], {"i": i})
        cache.put(key, {"train": output(tmp_path / str(i), "train", bytes(100_000))})
        os.utime(settings.cache_path / "entries" / key / "entry.json", (1000 + i, 1000 + i))
        keys.append(key)
    cache.compute_key("comp-split", "img", [], {"i": 0})
    assert cache.get(keys[0]) is not None  # used now: the most recent
    assert evict(settings.cache_path, 250_000) == 1
    assert {e.key for e in entries(settings.cache_path)} == {keys[0], keys[2]}
    assert clear(settings.cache_path) == 2
    assert entries(settings.cache_path) == []


def test_cache_ls_and_clear_commands(settings: Settings, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crispops.cli import app

    roundtrip(settings, tmp_path)
    env = {"CRISPOPS_STATE_DIR": str(settings.state_path)}
    runner = CliRunner()
    listed = runner.invoke(app, ["cache", "ls", "-p", str(settings.project_dir)], env=env)
    assert listed.exit_code == 0, listed.output
    assert "evaluate" in listed.output and "1 entries" in listed.output
    cleared = runner.invoke(app, ["cache", "clear", "-p", str(settings.project_dir)], env=env)
    assert "deleted 1 entries" in cleared.output
    assert entries(settings.cache_path) == []
