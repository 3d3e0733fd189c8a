"""The router over real `bentoml serve` processes: the champion's service routing to a
challenger's (a constant model, packaged as a gated-out run would), its settings file
rewritten between tests as the cluster's ConfigMap would be (re-read within a second,
no restart). Canary shares and stickiness, shadow answering from the champion while
both log, a slow or unreachable challenger costing the champion nothing, and the
rollout's analysis failing a bad challenger."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from crispops.cli import app
from crispops.config import load_settings
from crispops.monitoring.store import ParquetSink
from crispops.serving.router import CONFIG_ENV, bucket
from support.clients import feature_row
from support.projects import package_challenger
from support.servers import Server, connect_error, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ENTITIES = range(1, 601)  # 600 entities (most unknown to the store: imputed, still routed)


@pytest.fixture(scope="module")
def challenger(trained_project: Path) -> dict[str, str]:
    return package_challenger(trained_project, weak=True)


@pytest.fixture(scope="module")
def router_file(trained_project: Path) -> Path:
    """Where `crispops serve --challenger` writes the router's settings."""
    return load_settings(trained_project).state_path / "router.json"


@pytest.fixture(scope="module")
def servers(
    trained_project: Path, challenger: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """`crispops serve --challenger TAG --canary 10`: the champion's server (the router)
    and the challenger's, which the command starts itself; one worker each."""
    env = {
        **os.environ,
        "CRISPOPS_MONITORING__FLUSH_SECONDS": "0.2",
        "CRISPOPS_SERVING__MISSING_ENTITY": "impute",
    }
    env.pop(CONFIG_ENV, None)
    cport, port = free_port(), free_port()
    argv = [
        sys.executable,
        "-m",
        "crispops.cli",
        "serve",
        "-p",
        str(trained_project),
        "--port",
        str(port),
        "--challenger",
        challenger["bento_tag"],
        "--canary",
        "10",
        "--challenger-port",
        str(cport),
    ]
    logs = tmp_path_factory.mktemp("serve-router")
    cli = Server("crispops-serve", argv, env, port, logs / "serve.log")
    try:
        cli.wait_ready(timeout=240)
        chall = Server.__new__(Server)  # the challenger's address, for the tests' settings
        chall.url = f"http://127.0.0.1:{cport}"
        assert httpx.get(chall.url + "/readyz", timeout=5).status_code == 200
        yield cli, chall
    finally:
        cli.stop(grace=20)
    assert connect_error("127.0.0.1", cport) is not None, "the challenger outlived serve"


def route(path: Path, challenger_url: str, tag: str, mode: str, weight: float, **more: Any) -> None:
    """Rewrite the router's settings, and wait out the once-a-second look at the file."""
    body = {"mode": mode, "weight": weight, "challenger_url": challenger_url}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**body, "challenger_model_tag": tag, **more}))
    tmp.replace(path)
    time.sleep(1.3)


def entity_calls(url: str, entities: Any, batch: int = 50) -> dict[int, dict[str, Any]]:
    """/predict_entity for each entity, ``batch`` per request: entity -> its answer."""
    ids = list(entities)
    out: dict[int, dict[str, Any]] = {}
    with httpx.Client(timeout=30) as client:
        for i in range(0, len(ids), batch):
            chunk = ids[i : i + batch]
            records = [
                {"customer_id": e, "requested_amount": 9000, "term_months": 36} for e in chunk
            ]
            resp = client.post(url + "/predict_entity", json={"records": records})
            assert resp.status_code == 200, resp.text
            out.update(zip(chunk, resp.json(), strict=True))
    return out


def logged(log_dir: Path, ids: set[str], tags: int = 2, timeout: float = 15.0) -> Any:
    """The log's records for ``ids`` once ``tags`` models' records are all there."""
    sink = ParquetSink(log_dir)
    deadline = time.monotonic() + timeout
    while True:
        df = sink.read_predictions()
        hit = df[df["request_id"].isin(ids)]
        if len(hit) >= tags * len(ids) or time.monotonic() > deadline:
            return hit
        time.sleep(0.3)


def metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def test_canary_answers_its_share_of_entities_and_each_entity_sticks(
    servers: tuple[Server, Server], challenger: dict[str, str], router_file: Path
) -> None:
    champ, chall = servers
    # as `crispops serve --challenger TAG --canary 10` wrote it
    assert json.loads(router_file.read_text()) == {
        "mode": "canary",
        "weight": 10.0,
        "challenger_url": chall.url,
        "challenger_model_tag": challenger["model_tag"],
        "challenger_bento_tag": challenger["bento_tag"],
        "champion_bento_tag": json.loads((router_file.parent / "champion.json").read_text())[
            "bento_tag"
        ],
    }
    first = entity_calls(champ.url, ENTITIES)
    tags = {a["model_tag"] for a in first.values()}
    assert len(tags) == 2 and challenger["model_tag"] in tags
    to_challenger = {e for e, a in first.items() if a["model_tag"] == challenger["model_tag"]}
    share = len(to_challenger) / len(first)
    assert abs(share - 0.10) < 0.03, share
    # the same entities, in another order and other batches: each meets the same model
    again = entity_calls(champ.url, reversed(ENTITIES), batch=37)
    assert {e for e, a in again.items() if a["model_tag"] == challenger["model_tag"]} == (
        to_challenger
    )
    # the stable hash decides, at any worker or replica
    assert to_challenger == {e for e in ENTITIES if bucket({"customer_id": e}, "") < 10}
    assert all(a["error"] is None and a["request_id"] for a in first.values())
    # metrics by the model that answered
    text = httpx.get(champ.url + "/metrics", timeout=10).text
    assert f'model_tag="{challenger["model_tag"]}"' in text


def test_canary_weight_steps_without_a_restart_and_predict_routes_by_request_id(
    servers: tuple[Server, Server],
    challenger: dict[str, str],
    router_file: Path,
    trained_project: Path,
) -> None:
    champ, chall = servers
    route(router_file, chall.url, challenger["model_tag"], "canary", 50)
    answers = entity_calls(champ.url, ENTITIES)
    share = sum(a["model_tag"] == challenger["model_tag"] for a in answers.values()) / 600
    assert abs(share - 0.50) < 0.05, share
    # /predict records carry no entity keys: routed by their request ids
    record = feature_row(trained_project)
    ids = [f"p-{uuid.uuid4().hex[:12]}" for _ in range(300)]
    resp = httpx.post(
        champ.url + "/predict",
        json={"records": [{**record, "request_id": rid} for rid in ids]},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    got = {a["request_id"]: a["model_tag"] for a in resp.json()}
    assert set(got) == set(ids)
    expected = {rid for rid in ids if bucket(None, rid) < 50}
    assert {rid for rid, tag in got.items() if tag == challenger["model_tag"]} == expected
    assert 0.4 < len(expected) / len(ids) < 0.6


def test_shadow_answers_from_the_champion_and_both_models_log(
    servers: tuple[Server, Server],
    challenger: dict[str, str],
    router_file: Path,
    trained_project: Path,
) -> None:
    champ, chall = servers
    route(router_file, chall.url, challenger["model_tag"], "shadow", 100)
    answers = entity_calls(champ.url, range(1001, 1301))
    champion_tags = {a["model_tag"] for a in answers.values()}
    assert len(champion_tags) == 1 and challenger["model_tag"] not in champion_tags
    ids = {a["request_id"] for a in answers.values()}
    df = logged(load_settings(trained_project).monitoring_path, ids)
    by_tag = df.groupby("model_tag")["request_id"].apply(set).to_dict()
    assert by_tag == {champion_tags.pop(): ids, challenger["model_tag"]: ids}

    # the constant challenger's scores diverge from the champion's: analysis fails it
    out = CliRunner().invoke(
        app,
        [
            "rollout",
            "analyze",
            "-p",
            str(trained_project),
            "--challenger",
            challenger["bento_tag"],
            "--mode",
            "shadow",
            "--window",
            "1h",
            "--json",
        ],
    )
    verdict = json.loads(out.stdout)
    assert out.exit_code == 1, out.output
    assert verdict["status"] == "fail"
    assert any("PSI" in r for r in verdict["reasons"]), verdict["reasons"]


def test_a_slow_challenger_in_shadow_costs_the_champion_nothing(
    servers: tuple[Server, Server],
    challenger: dict[str, str],
    router_file: Path,
    trained_project: Path,
) -> None:
    champ, _ = servers
    # a port that accepts connections and never answers
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(512)
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"
        route(router_file, url, challenger["model_tag"], "shadow", 100, timeout_s=2.0)
        times, ids = [], set()
        with httpx.Client(timeout=30) as client:
            for e in range(2001, 2041):
                t0 = time.perf_counter()
                resp = client.post(
                    champ.url + "/predict_entity",
                    json={
                        "records": [{"customer_id": e, "requested_amount": 9000, "term_months": 36}]
                    },
                )
                times.append(time.perf_counter() - t0)
                assert resp.status_code == 200, resp.text
                [answer] = resp.json()
                assert answer["error"] is None and challenger["model_tag"] != answer["model_tag"]
                ids.add(answer["request_id"])
        times.sort()
        assert times[len(times) // 2] < 0.25, times  # far below the challenger's 2 s timeout
        # after the timeout the mirrors are logged as the challenger's errors
        df = logged(load_settings(trained_project).monitoring_path, ids, timeout=20)
        errs = df[df["model_tag"] == challenger["model_tag"]]
        assert set(errs["request_id"]) == ids and set(errs["outcome"]) == {"error"}
    assert metric(champ.url, "crispops_challenger_errors_total") >= len(ids)


def test_an_unreachable_challenger_in_canary_falls_back_and_fails_analysis(
    servers: tuple[Server, Server],
    challenger: dict[str, str],
    router_file: Path,
    trained_project: Path,
) -> None:
    champ, _ = servers
    route(router_file, f"http://127.0.0.1:{free_port()}", challenger["model_tag"], "canary", 100)
    answers = entity_calls(champ.url, range(3001, 3301))
    tags = {a["model_tag"] for a in answers.values()}
    assert len(tags) == 1 and challenger["model_tag"] not in tags  # the champion stood in
    assert all(a["error"] is None for a in answers.values())
    ids = {a["request_id"] for a in answers.values()}
    df = logged(load_settings(trained_project).monitoring_path, ids)
    errs = df[df["model_tag"] == challenger["model_tag"]]
    assert set(errs["request_id"]) == ids and set(errs["outcome"]) == {"error"}

    out = CliRunner().invoke(
        app,
        [
            "rollout",
            "analyze",
            "-p",
            str(trained_project),
            "--challenger",
            challenger["model_tag"],
            "--mode",
            "canary",
            "--window",
            "1h",
            "--json",
        ],
    )
    assert out.exit_code == 1, out.output
    verdict = json.loads(out.stdout)
    assert verdict["measurements"]["challenger_error_rate"] > 0.2, verdict
    assert any(r.startswith("error rate") for r in verdict["reasons"]), verdict["reasons"]
    route(router_file, "http://127.0.0.1:1", challenger["model_tag"], "off", 0)


def ids_on(side: str, n: int, weight: float, prefix: str) -> list[str]:
    """``n`` request ids the hash sends to the challenger (``side`` "challenger") or
    keeps on the champion, at ``weight``."""
    out: list[str] = []
    while len(out) < n:
        rid = f"{prefix}-{uuid.uuid4().hex[:12]}"
        if (bucket(None, rid) < weight) == (side == "challenger"):
            out.append(rid)
    return out


def test_a_slow_challenger_in_canary_does_not_hold_back_the_champions_predict(
    servers: tuple[Server, Server],
    challenger: dict[str, str],
    router_file: Path,
    trained_project: Path,
    record: dict[str, Any],
) -> None:
    """/predict is batched and BentoML runs one batch at a time per worker: the canary's
    records are routed before the batcher, so a request whose records all hash to the
    champion is answered while another request waits on a challenger that never
    answers (it would have waited behind that request's batch)."""
    import threading

    champ, _ = servers
    timeout = 3.0
    with socket.socket() as hole:  # accepts connections and never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(512)
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"
        route(router_file, url, challenger["model_tag"], "canary", 50, timeout_s=timeout)
        slow_ids = ids_on("challenger", 3, 50, "slow")
        fast_ids = ids_on("champion", 3, 50, "fast")
        done: dict[str, float] = {}
        slow: dict[str, Any] = {}

        def waits_on_the_challenger() -> None:
            body = {"records": [{**record, "request_id": rid} for rid in slow_ids]}
            slow["resp"] = httpx.post(champ.url + "/predict", json=body, timeout=30)
            done["slow"] = time.perf_counter()

        started = time.perf_counter()
        t = threading.Thread(target=waits_on_the_challenger)
        t.start()
        time.sleep(0.5)  # that request is in flight, its challenger call waiting
        body = {"records": [{**record, "request_id": rid} for rid in fast_ids]}
        fast = httpx.post(champ.url + "/predict", json=body, timeout=30)
        done["fast"] = time.perf_counter()
        t.join(timeout=30)
    assert fast.status_code == 200, fast.text
    assert [a["request_id"] for a in fast.json()] == fast_ids
    assert challenger["model_tag"] not in {a["model_tag"] for a in fast.json()}
    # answered long before the challenger's timeout ran out for the other request
    assert "slow" in done and done["slow"] - started > timeout, done
    assert done["slow"] - done["fast"] > timeout / 2, (started, done)
    # the slow request fell back to the champion's answers, in order, ids kept
    resp = slow["resp"]
    assert resp.status_code == 200, resp.text
    answers = resp.json()
    assert [a["request_id"] for a in answers] == slow_ids
    assert all(a["error"] is None and a["model_tag"] != challenger["model_tag"] for a in answers)
    # logged as the challenger's errors (and the champion's answers as its own), counted
    df = logged(load_settings(trained_project).monitoring_path, set(slow_ids))
    errs = df[df["model_tag"] == challenger["model_tag"]]
    assert set(errs["request_id"]) == set(slow_ids) and set(errs["outcome"]) == {"error"}
    mine = df[df["model_tag"] != challenger["model_tag"]]
    assert set(mine["request_id"]) == set(slow_ids) and set(mine["outcome"]) == {"ok"}
    text = httpx.get(champ.url + "/metrics", timeout=10).text
    assert any(
        line.startswith("crispops_challenger_errors_total")
        and 'endpoint="predict"' in line
        and 'mode="canary"' in line
        and float(line.rsplit(" ", 1)[1]) >= len(slow_ids)
        for line in text.splitlines()
    ), text


def test_a_mixed_predict_request_is_answered_in_order_by_the_model_each_record_hashes_to(
    servers: tuple[Server, Server],
    challenger: dict[str, str],
    router_file: Path,
    trained_project: Path,
    record: dict[str, Any],
) -> None:
    champ, chall = servers
    # records that differ, so the champion's answers differ from one to the next
    records = [{**record, "requested_amount": 1000 + 1500 * i} for i in range(40)]
    ids = [f"m-{uuid.uuid4().hex[:12]}" for _ in records]
    route(router_file, chall.url, challenger["model_tag"], "off", 0)
    alone = httpx.post(
        champ.url + "/predict",
        json={
            "records": [
                {**r, "request_id": f"{rid}-off"} for r, rid in zip(records, ids, strict=True)
            ]
        },
        timeout=30,
    ).json()
    champion_tag = alone[0]["model_tag"]
    assert len({a["probabilities"][next(iter(a["probabilities"]))] for a in alone}) > 5

    route(router_file, chall.url, challenger["model_tag"], "canary", 50)
    # a caller's id on even records, none on odd ones (the service makes theirs)
    sent = [
        {**r, "request_id": rid} if i % 2 == 0 else r
        for i, (r, rid) in enumerate(zip(records, ids, strict=True))
    ]
    resp = httpx.post(champ.url + "/predict", json={"records": sent}, timeout=30)
    assert resp.status_code == 200, resp.text
    answers = resp.json()
    assert len(answers) == len(records)
    got = [a["request_id"] for a in answers]
    assert got[::2] == ids[::2]  # the caller's ids survive, in the request's order
    assert len(set(got)) == len(got) and all(got[1::2])  # the service's: new and unique
    for i, a in enumerate(answers):
        assert a["error"] is None, a
        expected = challenger["model_tag"] if bucket(None, a["request_id"]) < 50 else champion_tag
        assert a["model_tag"] == expected, (i, a)
        if expected == champion_tag:  # the champion's answer for this very record
            assert a["probabilities"] == alone[i]["probabilities"], (i, a, alone[i])
    tags = [a["model_tag"] for a in answers]
    assert 5 < tags.count(challenger["model_tag"]) < 35, tags
    # each model logged the records it answered, once
    df = logged(load_settings(trained_project).monitoring_path, set(got), tags=1)
    by_tag = df.groupby("model_tag")["request_id"].apply(set).to_dict()
    assert by_tag == {
        champion_tag: {rid for rid, t in zip(got, tags, strict=True) if t == champion_tag},
        challenger["model_tag"]: {
            rid for rid, t in zip(got, tags, strict=True) if t != champion_tag
        },
    }
    assert len(df) == len(got)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "validation error"),
        (b'{"records": []}', "at least 1 item"),
        (b'{"records": [{"requested_amount": "lots"}]}', "validation error"),
    ],
)
def test_a_bad_predict_body_in_canary_gets_bentomls_400(
    servers: tuple[Server, Server],
    challenger: dict[str, str],
    router_file: Path,
    body: bytes,
    says: str,
) -> None:
    champ, chall = servers
    if json.loads(router_file.read_text()).get("weight") != 50:
        route(router_file, chall.url, challenger["model_tag"], "canary", 50)
    resp = httpx.post(
        champ.url + "/predict",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 400, resp.text
    assert says in resp.text, resp.text
