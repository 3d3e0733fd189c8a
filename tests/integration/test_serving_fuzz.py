"""schemathesis against the real server's OpenAPI schema: generated requests, valid and
invalid, must never get a 5xx, and every 4xx must name the problem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Server, serve_bento

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Requests per operation: /predict and /predict_entity, so >= 2,000 in all by default.
EXAMPLES = 1020


@pytest.fixture(scope="module")
def server(trained_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = serve_bento(trained_project, tmp_path_factory.mktemp("fuzz"))
    yield srv
    srv.stop()


def fuzz(url: str, examples: int) -> dict[str, Any]:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings

    schema = schemathesis.openapi.from_url(url + "/docs.json")
    seen: dict[str, Any] = {"requests": 0, "by_status": {}, "server_errors": [], "unnamed": []}
    operations = [
        op.ok()
        for op in schema.get_all_operations()
        if op.ok().path in ("/predict", "/predict_entity")
    ]
    assert {op.path for op in operations} == {"/predict", "/predict_entity"}
    for operation in operations:
        for mode in ("positive", "negative"):
            strategy = operation.as_strategy(generation_mode=_mode(mode))

            @settings(
                max_examples=examples // 2,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def call(case: Any) -> None:
                response = case.call(base_url=url, timeout=10)
                seen["requests"] += 1
                status = response.status_code
                seen["by_status"][status] = seen["by_status"].get(status, 0) + 1
                if status >= 500:
                    seen["server_errors"].append((case.path, status, response.text[:300]))
                elif status >= 400 and not _names_problem(response):
                    seen["unnamed"].append((case.path, status, response.text[:300]))

            call()
    return seen


def _mode(name: str) -> Any:
    from schemathesis import GenerationMode

    return GenerationMode.POSITIVE if name == "positive" else GenerationMode.NEGATIVE


def _names_problem(response: Any) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    if isinstance(body, dict) and body.get("detail"):
        return all(d.get("msg") and "loc" in d for d in body["detail"])
    if isinstance(body, list):  # BentoML wraps a 4xx exception's message in a list
        body = body[0] if body else {}
    return isinstance(body, dict) and "record" in str(body.get("error", ""))


def test_generated_requests_never_get_a_server_error(server: Server) -> None:
    seen = fuzz(server.url, EXAMPLES)
    print(f"\nschemathesis: {seen['requests']} requests, by status {seen['by_status']}")
    assert seen["requests"] >= 2000
    assert seen["server_errors"] == []
    assert seen["unnamed"] == []
    assert any(200 <= s < 300 for s in seen["by_status"])  # valid requests were made too
    assert any(400 <= s < 500 for s in seen["by_status"])  # and invalid ones rejected
    assert "Traceback" not in server.log.read_text()
