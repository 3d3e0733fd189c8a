"""The champion's BentoML service: in process through its ASGI app, and as real
`bentoml serve` processes over HTTP with the SQLite and Redis online stores."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crispops.champion import read_champion
from crispops.config import load_settings
from crispops.contract import load_contract
from crispops.serving.runtime import serving_env
from crispops.serving.schemas import entity_model, record_model
from support.online_store import REDIS_YAML
from support.servers import Server, serve_bento
from tests.conftest import service_available

pytestmark = pytest.mark.integration


# -- the contract -------------------------------------------------------------------------
def test_request_models_are_derived_from_the_feature_service(demo_project: Path) -> None:
    s = load_settings(demo_project)
    contract = load_contract(s)
    from feast import FeatureStore

    service = FeatureStore(repo_path=str(s.repo_path)).get_feature_service(
        s.feature_store.feature_service
    )
    feast_features = [f.name for p in service.feature_view_projections for f in p.features]
    request = ["requested_amount", "term_months"]  # the on-demand view's RequestSource
    # and the caller's optional request id (the prediction log's key)
    assert list(record_model(contract).model_fields) == [*feast_features, *request, "request_id"]
    assert list(entity_model(contract).model_fields) == [*s.data.join_keys, *request, "request_id"]
    assert contract.request_names == request


# -- in process, through the ASGI app --------------------------------------------------------
@pytest.fixture(scope="module")
def client(trained_project: Path) -> Iterator[Any]:
    from starlette.testclient import TestClient

    s = load_settings(trained_project)
    champion = read_champion(s.champion_file)
    assert champion is not None
    saved = dict(os.environ)
    os.environ.update(serving_env(s))
    os.environ["CRISPOPS_SERVING__MAX_BATCH_SIZE"] = "50"
    try:
        from crispops.serving.service import make_service

        svc = make_service(champion.model_tag, bento_tag=champion.bento_tag)
        with TestClient(svc.to_asgi()) as c:
            yield c
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_predict_answers_with_class_probabilities_and_tag(
    client: Any, record: dict[str, Any], trained_project: Path
) -> None:
    champion = read_champion(load_settings(trained_project).champion_file)
    assert champion is not None
    resp = client.post("/predict", json={"records": [record, record]})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert len(out) == 2
    assert out[0]["model_tag"] == champion.model_tag
    assert out[0]["prediction"] in (0, 1)
    assert abs(sum(out[0]["probabilities"].values()) - 1.0) < 1e-6
    assert out[0]["request_id"] != out[1]["request_id"]  # each answer its own log id
    assert {**out[0], "request_id": None} == {**out[1], "request_id": None}


def test_the_service_bounds_the_batchers_learned_wait(client: Any) -> None:
    """make_service applies serving.max_batch_wait_ms (0 by default) to BentoML's
    batcher: after a burst whose batches queued 20 ms, it holds no lone request."""
    from bentoml._internal.marshal import dispatcher

    opt = dispatcher.Optimizer(max_latency=0.5)
    for _ in range(20):
        opt.log_outbound(n=16, wait=0.020, duration=0.004)
    opt.trigger_refresh()
    assert opt.wait == 0.0


def test_predict_entity_reads_online_features(client: Any, known_entity: int) -> None:
    body = {
        "records": [
            {"customer_id": known_entity, "requested_amount": 12000.0, "term_months": 36},
            {"customer_id": -5, "requested_amount": 12000.0, "term_months": 36},
        ]
    }
    resp = client.post("/predict_entity", json=body)
    assert resp.status_code == 200, resp.text
    known, unknown = resp.json()
    assert known["error"] is None and known["prediction"] in (0, 1)
    assert unknown["prediction"] is None
    assert "record 1" in unknown["error"] and "customer_id=-5" in unknown["error"]


def test_metadata_and_probes(client: Any, trained_project: Path) -> None:
    meta = client.get("/metadata")
    assert meta.status_code == 200
    data = meta.json()
    assert data["feature_service"] == "credit_default_v1"
    assert data["task"] == "binary" and "roc_auc" in data["metrics"]
    assert data["request_fields"] == ["requested_amount", "term_months"]
    assert set(data["training_window"]) == {"start", "end"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200


def test_metrics_count_predictions_by_outcome(client: Any, record: dict[str, Any]) -> None:
    client.post("/predict", json={"records": [record]})
    client.post(
        "/predict_entity",
        json={"records": [{"customer_id": -7, "requested_amount": 1.0, "term_months": 12}]},
    )
    import re

    text = client.get("/metrics").text
    tag = client.get("/metadata").json()["model_tag"]
    ok = re.search(
        r'^crispops_predictions_total\{endpoint="predict",model_tag="([^"]+)",outcome="ok"\} ',
        text,
        re.M,
    )
    assert ok is not None and ok.group(1) == tag, text[:2000]  # labelled by the model
    assert f'endpoint="predict_entity",model_tag="{tag}",outcome="error"' in text
    assert re.search(
        rf'^crispops_predict_seconds_bucket\{{endpoint="predict",.*model_tag="{re.escape(tag)}"',
        text,
        re.M,
    )


BAD = [
    ("malformed json", b'{"records": [', "json_invalid", None),
    ("empty batch", {"records": []}, "too_short", "records"),
    ("missing field", "drop:credit_score", "missing", "records.0.credit_score"),
    ("extra field", "add:shoe_size", "extra_forbidden", "records.0.shoe_size"),
    ("wrong type", "set:annual_income=abc", "float_parsing", "records.0.annual_income"),
    ("string for a category", "setnum:home_ownership=5", "string_type", "records.0.home_ownership"),
    ("infinity", b"INF", "finite_number", "records.0.annual_income"),
    ("nan", b"NAN", "finite_number", "records.0.annual_income"),
    ("null request field", "set:term_months=None", "int_type", "records.0.term_months"),
    ("over the batch maximum", "many:51", "too_long", "records"),
]


@pytest.mark.parametrize(("case", "body", "kind", "where"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_naming_field_and_record(
    client: Any, record: dict[str, Any], case: str, body: Any, kind: str, where: str | None
) -> None:
    content: bytes
    if isinstance(body, bytes) and body in (b"INF", b"NAN"):
        text = json.dumps({"records": [record]})
        literal = "Infinity" if body == b"INF" else "NaN"
        content = text.replace(
            f'"annual_income": {json.dumps(record["annual_income"])}',
            f'"annual_income": {literal}',
            1,
        ).encode()
    elif isinstance(body, bytes):
        content = body
    elif isinstance(body, dict):
        content = json.dumps(body).encode()
    else:
        op, _, arg = body.partition(":")
        rec = dict(record)
        if op == "drop":
            del rec[arg]
        elif op == "add":
            rec[arg] = 1
        elif op in ("set", "setnum"):
            name, _, value = arg.partition("=")
            rec[name] = None if value == "None" else (int(value) if op == "setnum" else value)
        records = [rec] * (int(arg) if op == "many" else 1)
        content = json.dumps({"records": records}).encode()
    resp = client.post("/predict", content=content, headers={"content-type": "application/json"})
    assert resp.status_code in (400, 422), (case, resp.status_code, resp.text)
    data = resp.json()
    kinds = [d["type"] for d in data["detail"]]
    assert kind in kinds, (case, data)
    if where is not None:
        locs = [".".join(str(p) for p in d["loc"]) for d in data["detail"]]
        assert where in locs, (case, locs)


# -- real `bentoml serve` processes -----------------------------------------------------------
@pytest.fixture(scope="module")
def bento_server(
    trained_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    server = serve_bento(trained_project, tmp_path_factory.mktemp("serve"))
    yield server
    server.stop()


def test_the_packaged_bento_serves_both_endpoints(
    bento_server: Server, record: dict[str, Any], known_entity: int
) -> None:
    ready = httpx.get(bento_server.url + "/readyz", timeout=5)
    assert ready.status_code == 200
    resp = httpx.post(bento_server.url + "/predict", json={"records": [record]}, timeout=10)
    assert resp.status_code == 200 and resp.json()[0]["prediction"] in (0, 1)
    resp = httpx.post(
        bento_server.url + "/predict_entity",
        json={
            "records": [
                {"customer_id": known_entity, "requested_amount": 5000.0, "term_months": 24}
            ]
        },
        timeout=10,
    )
    assert resp.status_code == 200 and resp.json()[0]["error"] is None
    bad = httpx.post(bento_server.url + "/predict", json={"records": [{"x": 1}]}, timeout=10)
    assert bad.status_code == 400
    log = bento_server.log.read_text()
    assert "Traceback" not in log
    assert "rejected bad input" in log


def test_predict_entity_on_redis(trained_project: Path, tmp_path: Path, known_entity: int) -> None:
    service_available("127.0.0.1", 6379, "Redis")
    from crispops.steps.features import apply, materialize

    project = tmp_path / "p"
    shutil.copytree(trained_project, project, ignore=shutil.ignore_patterns("*.db"))
    repo = project / "feature_repo"
    (repo / "feature_store.redis.yaml").write_text(
        REDIS_YAML.format(project="crispops_serving_redis")
    )
    apply(repo, config_file="feature_store.redis.yaml")
    materialize(repo, config_file="feature_store.redis.yaml")
    server = serve_bento(
        project,
        tmp_path,
        {
            "CRISPOPS_SERVING__FEATURE_REPO": str(repo),
            "CRISPOPS_SERVING__FEATURE_STORE_YAML": "feature_store.redis.yaml",
            "BENTOML_HOME": str(load_settings(trained_project).bentoml_home),
        },
    )
    try:
        resp = httpx.post(
            server.url + "/predict_entity",
            json={
                "records": [
                    {"customer_id": known_entity, "requested_amount": 5000.0, "term_months": 24},
                    {"customer_id": -1, "requested_amount": 5000.0, "term_months": 24},
                ]
            },
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        known, unknown = resp.json()
        assert known["error"] is None and known["prediction"] in (0, 1)
        assert "not in the online store" in unknown["error"]
    finally:
        server.stop()


def test_unknown_entity_is_imputed_when_the_settings_say_so(
    trained_project: Path, known_entity: int
) -> None:
    """serving.missing_entity = "impute": the model's own imputer fills the features and
    the response lists them; a known entity is answered as usual."""
    import bentoml

    from crispops.config import ServingSettings
    from crispops.serving.service import Predictor

    s = load_settings(trained_project)
    champion = read_champion(s.champion_file)
    assert champion is not None
    os.environ["BENTOML_HOME"] = str(s.bentoml_home)
    model = bentoml.models.get(champion.model_tag)
    predictor = Predictor(Path(model.path), dict(model.info.metadata), champion.model_tag)
    runtime = ServingSettings(missing_entity="impute", feature_repo=s.repo_path)
    rows = [
        {"customer_id": -42, "requested_amount": 8000.0, "term_months": 24},
        {"customer_id": known_entity, "requested_amount": 8000.0, "term_months": 24},
    ]
    unknown, known = predictor.lookup(runtime, rows)
    assert unknown.error is None and unknown.prediction in (0, 1)
    assert set(unknown.imputed) == set(predictor.contract.stored_feature_names)
    assert known.error is None and known.imputed == []
