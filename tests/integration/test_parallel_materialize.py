"""The materialization pipeline: chunks read in parallel KFP tasks, written oldest first.

Real Feast (DuckDB offline store over Parquet; SQLite online store, and PostgreSQL where
one answers) and real kfp.local runs. A chunk's failure is injected into the task's own
process: a ``sitecustomize`` on the tasks' PYTHONPATH wraps the offline store pull
(``crispops.steps.chunks.pull_latest``), logs every pull it makes and raises for the
windows the test names. The sequential baseline is ``materialize(chunk=...)`` on a
second project made from the same data.
"""

from __future__ import annotations

import json
import os
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crispops.cli import app
from crispops.config import load_settings
from crispops.steps import chunks
from crispops.steps.features import _store, materialize
from tests.conftest import service_available

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WIDE = {"COLUMNS": "400", "CRISPOPS_DEBUG": ""}
CHUNK = timedelta(days=24)
HOOK = textwrap.dedent(
    """
    import json, os, time
    spec = os.environ.get("CHUNK_FAULTS_SPEC")
    if spec:
        from crispops.steps import chunks
        real = chunks.pull_latest
        def pull_latest(store, fv, start, end):
            faults = json.loads(open(spec).read())
            with open(faults["log"], "a") as log:
                log.write(json.dumps({"start": start.isoformat(), "at": time.time()}) + "\\n")
            if start.isoformat() in faults.get("fail", []):
                raise RuntimeError(f"injected failure in the chunk from {start.isoformat()}")
            return real(store, fv, start, end)
        chunks.pull_latest = pull_latest
    """
)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=WIDE)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six weeks of rows for 60 shops: each shop has rows in every chunk, so the order
    the chunks are written in decides which value ends up online."""
    rng = np.random.default_rng(15)
    n, start = 600, datetime.now(UTC).replace(microsecond=0) - timedelta(days=42)
    minutes = np.sort(rng.choice(42 * 1440, n, replace=False))
    path = tmp_path_factory.mktemp("data") / "shops.parquet"
    pd.DataFrame(
        {
            "shop_id": rng.integers(0, 60, n),
            "seen_at": [start + timedelta(minutes=int(m)) for m in minutes],
            "revenue": rng.normal(100, 20, n).round(2),
            "visits": rng.poisson(20, n),
            "churned": rng.integers(0, 2, n),
        }
    ).to_parquet(path, index=False)
    return path


def make_project(data: Path, where: Path, name: str = "shops") -> Path:
    code, out = invoke(
        "init", str(where / name), "--data", str(data), "--entity", "shop_id",
        "--timestamp", "seen_at", "--label", "churned", "--task", "binary",
    )  # fmt: skip
    assert code == 0, out
    toml = where / name / "crispops.toml"
    text = toml.read_text()
    toml.write_text(
        text.replace('engine = "duckdb"', 'engine = "duckdb"\nmaterialize_chunk = "24d"')
    )
    return where / name


def view_name(repo: Path) -> str:
    (view,) = _store(repo).list_feature_views()  # init names it after the project
    return view.name


def online(repo: Path) -> pd.DataFrame:
    store = _store(repo)
    view = view_name(repo)
    keys = pd.read_parquet(repo / "data" / "features.parquet", columns=["shop_id"])
    rows = [{"shop_id": int(k)} for k in sorted(keys["shop_id"].unique())]
    frame = store.get_online_features(
        features=[f"{view}:revenue", f"{view}:visits"], entity_rows=rows
    ).to_df()
    return frame.sort_values("shop_id", ignore_index=True)


def intervals(repo: Path) -> list[tuple[datetime, datetime]]:
    return list(_store(repo).get_feature_view("shops_fv").materialization_intervals)


@pytest.mark.slow
def test_a_failed_chunk_is_rerun_alone_and_online_equals_sequential(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crispops.orchestration.local import run_materialization

    project = make_project(data, tmp_path / "parallel")
    baseline = make_project(data, tmp_path / "sequential")
    for p in (project, baseline):
        assert invoke("features", "apply", "-p", str(p))[0] == 0
    settings = load_settings(project)
    repo, state = settings.repo_path, settings.state_path
    end = datetime.now(UTC).replace(microsecond=0)
    planned = chunks.plan(repo, state, CHUNK, end=end)
    assert [c.index for c in planned] == [0, 1, 2], planned
    older, newer = planned[1], planned[2]  # both hold rows of every shop

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    spec, log = tmp_path / "faults.json", tmp_path / "pulls.jsonl"
    spec.write_text(json.dumps({"fail": [older.start], "log": str(log)}))
    path = os.pathsep.join([str(hook), str(ROOT / "src"), str(ROOT)])
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("CHUNK_FAULTS_SPEC", str(spec))

    first = run_materialization(settings, end=end)
    assert not first.ok, "the injected failure did not fail the run"
    assert "injected failure" in first.log.read_text()
    assert _store(repo).get_feature_view("shops_fv").most_recent_end_time is None, (
        "something was written although a chunk failed"
    )
    pulled_first = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(p["start"] for p in pulled_first) == sorted(c.start for c in planned)
    recorded = {c.start for c in planned if (chunks.record_dir(state, c) / "done.json").is_file()}
    assert recorded == {planned[0].start, newer.start}, "the finished chunks were not recorded"

    # The rerun, later (up to now): it plans the unfinished chunks as they were, then one
    # more from the first run's end to now; it reads the failed chunk and the new one.
    spec.write_text(json.dumps({"fail": [], "log": str(log)}))
    second = run_materialization(settings)
    assert second.ok, second.error
    summary = second.output("write-chunks")["views"]["shops_fv"]
    now = datetime.fromisoformat(summary["end"])
    assert now > end
    pulled = [json.loads(line) for line in log.read_text().splitlines()][len(pulled_first) :]
    assert sorted(p["start"] for p in pulled) == sorted([older.start, end.isoformat()]), (
        "a finished chunk was read again"
    )
    reused = {m["start"]: m["reused"] for m in second.chunk_reads()}
    assert reused == {
        planned[0].start: True,
        older.start: False,
        newer.start: True,
        end.isoformat(): False,
    }
    # The newer chunk was read (in the first run) before the older one (in the second):
    # written in the order they finished, the older values would be online.
    newer_read = max(p["at"] for p in pulled_first if p["start"] == newer.start)
    assert newer_read < min(p["at"] for p in pulled if p["start"] == older.start)
    assert not any((state / chunks.RECORDS / "shops_fv").iterdir()), "records left behind"

    # The sequential baseline over the same windows: to the first run's end, then to now.
    materialize(baseline / "feature_repo", end=end, chunk=CHUNK)
    materialize(baseline / "feature_repo", end=now, chunk=CHUNK)
    assert intervals(repo) == intervals(baseline / "feature_repo")
    assert _store(repo).get_feature_view("shops_fv").most_recent_end_time == now
    pd.testing.assert_frame_equal(online(repo), online(baseline / "feature_repo"))
    code, out = invoke("features", "check", "-p", str(project), "--sample", "60")
    assert code == 0 and out.startswith("ok:"), out
    assert summary["chunks"] == 4 and summary["reused"] == 2

    # Up to date: the plan is one placeholder (kfp.local cannot loop over no items), and
    # the run reads and writes nothing.
    third = run_materialization(settings, end=now)
    assert third.ok, third.error
    assert third.output("write-chunks") == {"views": {}}
    assert intervals(repo) == intervals(baseline / "feature_repo")


PG_ONLINE = """online_store:
  type: postgres
  host: 127.0.0.1
  port: 5432
  database: test
  db_schema: public
  user: postgres
  password: ""
  sslmode: disable
"""


def latest(data: Path, end: datetime) -> pd.DataFrame:
    """What any correct materialization to ``end`` leaves online: each shop's latest row."""
    frame = pd.read_parquet(data)
    frame = frame[frame["seen_at"] <= end].sort_values("seen_at")
    last = frame.groupby("shop_id").tail(1)[["shop_id", "revenue", "visits"]]
    return last.sort_values("shop_id", ignore_index=True)


@pytest.mark.parametrize(
    "online_store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_chunks_are_written_oldest_first_whatever_order_they_were_read_in(
    data: Path, tmp_path: Path, online_store: str
) -> None:
    """The ordering guard: SQLite and PostgreSQL upsert unconditionally, so writing the
    chunks in the order their reads finished (newest first here) leaves older values
    online; ``write`` sorts them, and the result is each shop's latest row."""
    name = "shops"
    if online_store == "postgres":
        service_available("127.0.0.1", 5432, "PostgreSQL")
        name = f"pg{uuid.uuid4().hex[:8]}"  # its own tables on the shared server
    project = make_project(data, tmp_path, name)
    repo = project / "feature_repo"
    if online_store == "postgres":
        yaml = repo / "feature_store.yaml"
        sqlite = "online_store:\n  type: sqlite\n  path: data/online_store.db\n"
        assert sqlite in yaml.read_text()
        yaml.write_text(yaml.read_text().replace(sqlite, PG_ONLINE))
    assert invoke("features", "apply", "-p", str(project))[0] == 0
    state = load_settings(project).state_path
    end = datetime.now(UTC).replace(microsecond=0)
    try:
        planned = chunks.plan(repo, state, CHUNK, end=end)
        read = [(c, tmp_path / f"chunk{c.index}.parquet") for c in reversed(planned)]
        for c, out in read:  # newest first, as if the older reads finished last
            assert chunks.read(repo, state, c, out).rows >= 0
        store = _store(repo)
        for _, out in read:  # the naive order: as they finished
            frame = pd.read_parquet(out)
            if len(frame):
                store.write_to_online_store(view_name(repo), frame)
        want = latest(data, end)
        naive = online(repo)[["shop_id", "revenue", "visits"]]
        assert not naive.equals(want), "the data does not tell the write order apart"

        result = chunks.write(repo, state, read)
        assert result.views[view_name(repo)]["chunks"] == len(planned)
        got = online(repo)[["shop_id", "revenue", "visits"]]
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
        fv = _store(repo).get_feature_view(view_name(repo))
        assert fv.most_recent_end_time == end
        assert [i[1] for i in fv.materialization_intervals] == [c.window[1] for c in planned]
    finally:
        if online_store == "postgres":
            _store(repo).teardown()


def test_write_refuses_chunks_that_do_not_start_at_the_watermark(
    data: Path, tmp_path: Path
) -> None:
    project = make_project(data, tmp_path)
    repo = project / "feature_repo"
    assert invoke("features", "apply", "-p", str(project))[0] == 0
    state = load_settings(project).state_path
    end = datetime.now(UTC).replace(microsecond=0)
    planned = chunks.plan(repo, state, CHUNK, end=end)
    read = [(c, tmp_path / f"chunk{c.index}.parquet") for c in planned]
    for c, out in read:
        chunks.read(repo, state, c, out)
    with pytest.raises(chunks.FeatureStoreError, match="a chunk is missing"):
        chunks.write(repo, state, read[1:])
    materialize(repo, end=end - timedelta(days=1))  # another run moved the watermark
    with pytest.raises(chunks.FeatureStoreError, match="another materialization ran"):
        chunks.write(repo, state, read)
    # nothing to do: the plan is the one placeholder chunk, and writing it is a no-op
    materialize(repo, end=end)
    assert chunks.plan(repo, state, CHUNK, end=end) == [chunks.NOTHING]
    assert chunks.write(repo, state, [(chunks.NOTHING, tmp_path / "none")]).views == {}


def test_a_later_plan_keeps_an_unfinished_plans_chunks_and_reuses_their_reads(
    data: Path, tmp_path: Path
) -> None:
    """ "now" moves between a failed run and its rerun: the rerun still plans the failed
    run's chunks as they were (so their records are used), then new ones up to now; a
    record whose source changed is read again."""
    project = make_project(data, tmp_path)
    repo = project / "feature_repo"
    assert invoke("features", "apply", "-p", str(project))[0] == 0
    state = load_settings(project).state_path
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    first = chunks.plan(repo, state, CHUNK, end=end)
    for c in (first[0], first[2]):  # the middle one "failed"
        assert not chunks.read(repo, state, c, tmp_path / f"a{c.index}.parquet").reused
    later = end + timedelta(hours=1)
    second = chunks.plan(repo, state, CHUNK, end=later)
    assert [(c.start, c.end) for c in second] == [(c.start, c.end) for c in first] + [
        (end.isoformat(), later.isoformat())
    ]
    reads = {c.index: chunks.read(repo, state, c, tmp_path / f"b{c.index}.parquet") for c in second}
    assert [reads[i].reused for i in range(4)] == [True, False, True, False]
    chunks.write(repo, state, [(c, tmp_path / f"b{c.index}.parquet") for c in second])
    assert _store(repo).get_feature_view("shops_fv").most_recent_end_time == later

    # the source changes: a recorded read of the old data is not used
    newest = chunks.plan(repo, state, CHUNK, end=later + timedelta(minutes=30))
    assert len(newest) == 1
    assert not chunks.read(repo, state, newest[0], tmp_path / "c.parquet").reused
    assert chunks.read(repo, state, newest[0], tmp_path / "c.parquet").reused
    source = repo / "data" / "features.parquet"
    frame = pd.read_parquet(source)
    frame.loc[frame.index[-1], "revenue"] += 1.0
    frame.to_parquet(source, index=False)
    changed = chunks.plan(repo, state, CHUNK, end=later + timedelta(minutes=30))
    assert changed[0].data != newest[0].data
    assert not chunks.read(repo, state, changed[0], tmp_path / "c.parquet").reused
