"""The prediction log and /feedback over real `bentoml serve` processes: request ids in
every answer, the values the model used in the log, labels joined, the sink down costing
no request, and a graceful stop losing nothing queued."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crispops.monitoring.store import ParquetSink, PostgresSink, expand, labeled
from support.servers import Server, serve_bento
from tests.conftest import service_available

pytestmark = pytest.mark.integration
DSN = "postgresql://postgres@127.0.0.1:5432/test"


def log_env(path: Path, **more: str) -> dict[str, str]:
    env = {"CRISPOPS_MONITORING__PATH": str(path), "CRISPOPS_MONITORING__FLUSH_SECONDS": "0.2"}
    return env | {f"CRISPOPS_MONITORING__{k.upper()}": v for k, v in more.items()}


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prediction-log")


@pytest.fixture(scope="module")
def server(
    trained_project: Path, log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    srv = serve_bento(trained_project, tmp_path_factory.mktemp("serve"), log_env(log_dir))
    yield srv
    srv.stop()


def post(server: Server, path: str, body: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(
            server.url + path,
            content=body,
            headers={"content-type": "application/json"},
            timeout=30,
        )
    return httpx.post(server.url + path, json=body, timeout=30)


def logged(sink: Any, ids: list[str], timeout: float = 10.0) -> Any:
    """The log's rows for ``ids``, once the writer has written them all."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        df = sink.read_predictions()
        hit = df[df["request_id"].isin(ids)]
        if len(hit) == len(set(ids)) or time.monotonic() > deadline:
            return hit.set_index("request_id")
        time.sleep(0.2)


def test_answers_carry_request_ids_and_the_log_the_values_used(
    server: Server, log_dir: Path, record: dict[str, Any], known_entity: int
) -> None:
    mine = f"caller-{uuid.uuid4().hex[:8]}"
    resp = post(server, "/predict", {"records": [record, {**record, "request_id": mine}]})
    assert resp.status_code == 200, resp.text
    made, kept = resp.json()
    assert re.fullmatch(r"[0-9a-f]{32}", made["request_id"])
    assert kept["request_id"] == mine
    entity = {"customer_id": known_entity, "requested_amount": 7000.0, "term_months": 24}
    resp = post(server, "/predict_entity", {"records": [entity, {**entity, "customer_id": -9}]})
    assert resp.status_code == 200, resp.text
    found, missing = resp.json()
    assert found["error"] is None and missing["error"]
    ids = [made["request_id"], mine, found["request_id"], missing["request_id"]]
    assert len(set(ids)) == 4

    df = logged(ParquetSink(log_dir), ids)
    assert len(df) == 4
    assert list(df.loc[ids, "endpoint"]) == ["predict"] * 2 + ["predict_entity"] * 2
    assert list(df.loc[ids, "outcome"]) == ["ok", "ok", "ok", "error"]
    inputs = expand(df, "inputs")
    # /predict: the model's inputs are the values sent
    assert inputs.columns.size > 2
    assert {k: record[k] for k in inputs.columns} == inputs.loc[mine].to_dict()
    # /predict_entity: the values read from the online store (and the request fields)
    looked_up = json.loads(df.loc[found["request_id"], "inputs"])
    assert looked_up["requested_amount"] == 7000.0
    assert sum(v is not None for v in looked_up.values()) > 2, looked_up
    assert json.loads(df.loc[found["request_id"], "entity"]) == {"customer_id": known_entity}
    assert json.loads(df.loc[found["request_id"], "request"]) == {
        "requested_amount": 7000.0,
        "term_months": 24,
    }
    assert json.loads(df.loc[mine, "probabilities"]) == kept["probabilities"]
    assert df.loc[mine, "score"] == pytest.approx(kept["probabilities"]["1"])
    assert df.loc[mine, "model_tag"] == kept["model_tag"]
    assert (df["latency_s"] > 0).all()


def test_feedback_joins_labels_and_names_each_bad_record(
    server: Server, log_dir: Path, record: dict[str, Any]
) -> None:
    resp = post(server, "/predict", {"records": [record] * 3})
    a, b, c = (p["request_id"] for p in resp.json())
    body = {
        "records": [
            {"request_id": a, "label": 1, "observed_at": "2026-01-02T03:04:05Z"},
            {"request_id": b, "label": "0"},
            {"request_id": "never-served", "label": 1},
            {"request_id": c, "label": 7},
            {"request_id": c, "label": None},
        ]
    }
    resp = post(server, "/feedback", body)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["stored"] == 2
    errors = {e["record"]: e for e in answer["errors"]}
    assert sorted(errors) == [2, 3, 4]
    assert "not in the prediction log" in errors[2]["error"]
    assert "not one of the model's classes (0, 1)" in errors[3]["error"]
    assert "null" in errors[4]["error"]

    sink = ParquetSink(log_dir)
    joined = labeled(sink.read_predictions(), sink.read_feedback()).set_index("request_id")
    assert sorted(joined.index) == sorted([a, b])
    assert json.loads(joined.loc[a, "label"]) == 1 and json.loads(joined.loc[b, "label"]) == 0
    assert str(joined.loc[a, "observed_at"]) == "2026-01-02 03:04:05+00:00"

    # a repeat answers the same and leaves one label per prediction
    again = post(server, "/feedback", {"records": body["records"][:2]})
    assert again.json() == {"stored": 2, "errors": []}
    joined = labeled(sink.read_predictions(), sink.read_feedback())
    assert sorted(joined["request_id"]) == sorted([a, b])


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"records": [', "json"),
        (b'{"records": []}', "records"),
        (b'{"labels": [{"request_id": "x", "label": 1}]}', "records"),
        (b'{"records": [{"label": 1}]}', "request_id"),
        (b'{"records": [{"request_id": "x", "label": {"a": 1}}]}', "label"),
        (b'{"records": [{"request_id": "x", "label": 1, "observed_at": "soon"}]}', "observed"),
    ],
    ids=["not json", "empty", "wrong key", "no id", "object label", "bad time"],
)
def test_malformed_feedback_is_a_400(server: Server, body: bytes, where: str) -> None:
    resp = post(server, "/feedback", body)
    assert resp.status_code == 400, (resp.status_code, resp.text)
    assert where in resp.text, resp.text


@pytest.mark.postgres
def test_postgres_sink(
    trained_project: Path, tmp_path: Path, record: dict[str, Any], monkeypatch: Any
) -> None:
    service_available("127.0.0.1", 5432, "PostgreSQL")
    prefix = "t" + uuid.uuid4().hex[:10]
    env = log_env(
        tmp_path / "unused",
        sink="postgres",
        table_prefix=prefix,
        dsn_env="CRISPOPS_TEST_LOG_DSN",
    )
    srv = serve_bento(trained_project, tmp_path, {**env, "CRISPOPS_TEST_LOG_DSN": DSN})
    try:
        ids = [p["request_id"] for p in post(srv, "/predict", {"records": [record] * 5}).json()]
        resp = post(srv, "/feedback", {"records": [{"request_id": ids[0], "label": 0}]})
        assert resp.json() == {"stored": 1, "errors": []}, resp.text
    finally:
        srv.stop()
    sink = PostgresSink(DSN, prefix=prefix)
    try:
        df = sink.read_predictions()
        assert sorted(df["request_id"]) == sorted(ids)
        assert list(labeled(df, sink.read_feedback())["request_id"]) == [ids[0]]
    finally:
        sink.close()
    assert not (tmp_path / "unused").exists()


def _counter(text: str, name: str) -> float:
    m = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_the_sink_down_costs_no_request_and_drops_are_counted(
    trained_project: Path, tmp_path: Path, record: dict[str, Any]
) -> None:
    env = log_env(tmp_path, sink="postgres", dsn_env="CRISPOPS_TEST_DOWN_DSN", batch_size="4")
    down = "postgresql://postgres@127.0.0.1:1/test?connect_timeout=1"
    srv = serve_bento(trained_project, tmp_path, {**env, "CRISPOPS_TEST_DOWN_DSN": down})
    try:
        n = 0
        for _ in range(10):
            resp = post(srv, "/predict", {"records": [record] * 2})
            assert resp.status_code == 200, resp.text
            n += 2
        import time

        deadline = time.monotonic() + 20
        while True:
            metrics = httpx.get(srv.url + "/metrics", timeout=10).text
            dropped = _counter(metrics, "crispops_prediction_log_dropped_total")
            if dropped >= n or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert dropped == n, metrics[-2000:]
        assert _counter(metrics, "crispops_prediction_log_written_total") == 0
        # labels cannot be checked without the log: each record says why, no 5xx
        resp = post(srv, "/feedback", {"records": [{"request_id": "x", "label": 1}]})
        assert resp.status_code == 200, resp.text
        (error,) = resp.json()["errors"]
        assert "cannot connect to PostgreSQL" in error["error"] and "retry" in error["error"]
    finally:
        srv.stop()
    assert "Traceback" not in srv.log.read_text()


def test_sigterm_writes_what_is_queued(
    trained_project: Path, tmp_path: Path, record: dict[str, Any]
) -> None:
    """A writer that would wait a minute: only the shutdown hook can have written them."""
    env = log_env(tmp_path / "log", batch_size="100000", flush_seconds="120")
    srv = serve_bento(trained_project, tmp_path, env)
    ids: list[str] = []
    try:
        for _ in range(25):
            resp = post(srv, "/predict", {"records": [record] * 4})
            ids += [p["request_id"] for p in resp.json()]
        assert ParquetSink(tmp_path / "log").read_predictions().empty
    finally:
        srv.stop(grace=30)
    df = ParquetSink(tmp_path / "log").read_predictions()
    assert len(ids) == 100
    assert sorted(df["request_id"]) == sorted(ids)


def test_the_cli_prints_request_ids_and_returns_labels(
    server: Server, record: dict[str, Any], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from crispops.cli import app

    runner = CliRunner()
    records = tmp_path / "records.json"
    records.write_text(json.dumps([record, record]))
    out = runner.invoke(app, ["predict", "--records", str(records), "--url", server.url])
    assert out.exit_code == 0, out.output
    ids = re.findall(r"request ids \(.*\): (\S+) (\S+)", out.stderr)
    assert ids, out.stderr
    first, second = ids[0]
    args = ["feedback", "--url", server.url, "-r", first, "-r", second, "--label", "1"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "2 label(s) stored" in out.stdout
    out = runner.invoke(app, ["feedback", "--url", server.url, "-r", "nope", "-l", "1"])
    assert out.exit_code != 0 and "not in the prediction log" in out.stderr
