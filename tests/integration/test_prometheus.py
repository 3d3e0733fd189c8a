"""`rollout analyze` with a real Prometheus: Debian's `prometheus` binary, started here on
a free port, scraping a real `bentoml serve` of the project's champion every second.
The champion routes half its entities (canary 50) to an unreachable challenger, so
Prometheus sees the challenger's arm as all errors (the router counts each failed
record under the challenger's model tag) and the champion's as none; the analysis
must fail the challenger on that error rate, taken from Prometheus. Prometheus not
answering, rejecting a query, or having no series of an arm are a clear error or a
"wait", never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from crispops.champion import read_champion
from crispops.cli import app
from crispops.config import load_settings
from crispops.serving.router import CONFIG_ENV
from crispops.serving.runtime import serve_argv, serving_env
from support.projects import package_challenger
from support.servers import Server, free_port
from tests.conftest import REQUIRE_SERVICES

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found:
        return found
    message = "the prometheus binary is not installed (Debian: apt-get install prometheus)"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and CRISPOPS_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def champion_server(
    trained_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path, Path]]:
    """The champion's Bento under `bentoml serve`, its router settings file and its
    prediction log of its own (so other modules' traffic stays out of the window)."""
    tmp = tmp_path_factory.mktemp("prom-serve")
    s = load_settings(trained_project)
    champ = read_champion(s.champion_file)
    assert champ is not None
    config, log_dir = tmp / "router.json", tmp / "log"
    port = free_port()
    env = {
        **os.environ,
        **serving_env(s),
        CONFIG_ENV: str(config),
        "CRISPOPS_MONITORING__PATH": str(log_dir),
        "CRISPOPS_MONITORING__FLUSH_SECONDS": "0.2",
        "CRISPOPS_SERVING__MISSING_ENTITY": "impute",
    }
    server = Server(
        "champion", serve_argv(champ.bento_tag, "127.0.0.1", port), env, port, tmp / "s.log"
    )
    try:
        server.wait_ready(timeout=240)
        yield server, config, log_dir
    finally:
        server.stop(grace=20)


@pytest.fixture(scope="module")
def prometheus(
    champion_server: tuple[Server, Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A Prometheus scraping the champion's /metrics every second; its base URL."""
    binary = prometheus_binary()
    server = champion_server[0]
    tmp = tmp_path_factory.mktemp("prometheus")
    (tmp / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: crispops-model\n    static_configs:\n"
        f"      - targets: ['{server.url.removeprefix('http://')}']\n"
    )
    port = free_port()
    argv = [
        binary,
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with (tmp / "prometheus.log").open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
            try:
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prometheus not ready after 60 s"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def entity_calls(url: str, entities: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as client:
        ids = list(entities)
        for i in range(0, len(ids), 20):
            records = [
                {"customer_id": e, "requested_amount": 9000, "term_months": 36}
                for e in ids[i : i + 20]
            ]
            resp = client.post(url + "/predict_entity", json={"records": records})
            assert resp.status_code == 200, resp.text
            out += resp.json()
    return out


def series(url: str, promql: str) -> dict[str, float]:
    body = httpx.get(url + "/api/v1/query", params={"query": promql}, timeout=10).json()
    return {r["metric"].get("model_tag", ""): float(r["value"][1]) for r in body["data"]["result"]}


@pytest.fixture(scope="module")
def traffic(
    trained_project: Path, champion_server: tuple[Server, Path, Path], prometheus: str
) -> dict[str, str]:
    """Canary 50 to an unreachable challenger, in two bursts a few scrapes apart (a
    counter's first scrape is its baseline); returns the tags once Prometheus has both
    arms' increases."""
    server, config, _ = champion_server
    chall = package_challenger(trained_project, weak=False)
    champ = read_champion(load_settings(trained_project).champion_file)
    assert champ is not None
    config.write_text(
        json.dumps(
            {
                "mode": "canary",
                "weight": 50,
                "challenger_url": f"http://127.0.0.1:{free_port()}",
                "challenger_model_tag": chall["model_tag"],
                "timeout_s": 0.5,
            }
        )
    )
    time.sleep(1.3)  # the router looks at its file once a second
    for burst in (range(1, 201), range(201, 401)):
        answers = entity_calls(server.url, burst)
        assert {a["model_tag"] for a in answers} == {champ.model_tag}  # the champion stood in
        time.sleep(3.0)
    query = "sum by (model_tag) (increase(crispops_predictions_total[5m]))"
    deadline = time.monotonic() + 30
    while True:
        seen = series(prometheus, query)
        if seen.get(champ.model_tag, 0) > 0 and seen.get(chall["model_tag"], 0) > 0:
            break
        assert time.monotonic() < deadline, f"Prometheus never saw both arms: {seen}"
        time.sleep(1.0)
    return {"champion": champ.model_tag, "challenger": chall["model_tag"]}


def analyze(project: Path, log_dir: Path, challenger: str, **env: str) -> Any:
    return CliRunner().invoke(
        app,
        [
            *("rollout", "analyze", "-p", str(project), "--challenger", challenger),
            *("--mode", "canary", "--window", "10m", "--json"),
        ],
        env={
            "CRISPOPS_MONITORING__PATH": str(log_dir),
            "CRISPOPS_ROLLOUT__MIN_REQUESTS": "50",
            **env,
        },
    )


def test_error_rate_and_p99_come_from_prometheus(
    trained_project: Path,
    champion_server: tuple[Server, Path, Path],
    prometheus: str,
    traffic: dict[str, str],
) -> None:
    log_dir = champion_server[2]
    out = analyze(
        trained_project, log_dir, traffic["challenger"], CRISPOPS_ROLLOUT__PROMETHEUS_URL=prometheus
    )
    assert out.exit_code == 1, out.output
    verdict = json.loads(out.stdout)
    m = verdict["measurements"]
    assert m["live_source"] == prometheus
    # every challenger record failed, none of the champion's: as Prometheus counted them
    assert m["challenger_error_rate"] == pytest.approx(1.0)
    assert m["champion_error_rate"] == pytest.approx(0.0)
    assert m["champion_live_requests"] > 0 and m["challenger_live_requests"] > 0
    assert any(r.startswith("error rate") and "(Prometheus)" in r for r in verdict["reasons"])
    # the champion's p99 from its histogram; the challenger never answered: no latency
    assert m["champion_p99_ms"] > 0
    assert "latency not in Prometheus" in verdict["reasons"]


def test_a_selector_matching_nothing_is_wait_naming_prometheus(
    trained_project: Path,
    champion_server: tuple[Server, Path, Path],
    prometheus: str,
    traffic: dict[str, str],
) -> None:
    out = analyze(
        trained_project,
        champion_server[2],
        traffic["challenger"],
        CRISPOPS_ROLLOUT__PROMETHEUS_URL=prometheus,
        CRISPOPS_ROLLOUT__PROMETHEUS_SELECTOR='job="not-scraped"',
    )
    assert out.exit_code == 4, out.output  # wait
    verdict = json.loads(out.stdout)
    assert verdict["status"] == "wait"
    assert (
        prometheus in verdict["reasons"][0]
        and "no crispops_predictions_total" in (verdict["reasons"][0])
    )


def test_a_rejected_query_is_an_error_naming_prometheus(
    trained_project: Path,
    champion_server: tuple[Server, Path, Path],
    prometheus: str,
    traffic: dict[str, str],
) -> None:
    out = analyze(
        trained_project,
        champion_server[2],
        traffic["challenger"],
        CRISPOPS_ROLLOUT__PROMETHEUS_URL=prometheus,
        CRISPOPS_ROLLOUT__PROMETHEUS_SELECTOR='job=~"("',  # not a valid regex
    )
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output
    assert f"Prometheus at {prometheus} rejected the query" in " ".join(out.output.split())


def test_an_unreachable_prometheus_is_an_error_naming_it(
    trained_project: Path, champion_server: tuple[Server, Path, Path], traffic: dict[str, str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = analyze(
        trained_project,
        champion_server[2],
        traffic["challenger"],
        CRISPOPS_ROLLOUT__PROMETHEUS_URL=url,
    )
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output
    assert f"Prometheus at {url} is not reachable" in " ".join(out.output.split())
