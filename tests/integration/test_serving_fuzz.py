"""schemathesis against the real server's OpenAPI schema: generated requests, valid and
invalid, must never get a 5xx, and every 4xx must name the problem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.clients import fuzz
from support.servers import Server, serve_bento

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Requests per operation: /predict and /predict_entity, so >= 2,000 in all by default.
EXAMPLES = 1020


@pytest.fixture(scope="module")
def server(trained_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = serve_bento(trained_project, tmp_path_factory.mktemp("fuzz"))
    yield srv
    srv.stop()


def test_generated_requests_never_get_a_server_error(server: Server) -> None:
    seen = fuzz(server.url, EXAMPLES)
    print(f"\nschemathesis: {seen['requests']} requests, by status {seen['by_status']}")
    assert seen["requests"] >= 2000
    assert seen["server_errors"] == []
    assert seen["unnamed"] == []
    assert any(200 <= s < 300 for s in seen["by_status"])  # valid requests were made too
    assert any(400 <= s < 500 for s in seen["by_status"])  # and invalid ones rejected
    assert "Traceback" not in server.log.read_text()
