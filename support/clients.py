"""What a client sends the model server: a real record from a project's data, and
schemathesis's generated requests (valid and invalid) with what came back."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def feature_row(project: Path) -> dict[str, Any]:
    """A real record: an ingested training row's features and request fields."""
    import pandas as pd

    from crispops.config import load_settings
    from crispops.contract import feature_store, load_contract
    from crispops.steps.ingest import ingest

    s = load_settings(project)
    store = feature_store(s)
    contract = load_contract(s, store)
    df, _ = ingest(store, contract, s.label_source_path, s.data.timestamp, s.data.label)
    row = df.dropna().iloc[-1]
    out = {}
    for name in contract.input_names:
        v = row[name]
        out[name] = v.item() if hasattr(v, "item") else v
        if isinstance(out[name], float) and pd.isna(out[name]):
            out[name] = None
    return out


#: The endpoints fuzzed: both prediction endpoints and the labels' way back.
ENDPOINTS = ("/predict", "/predict_entity", "/feedback")


def fuzz(url: str, examples: int) -> dict[str, Any]:
    """``examples`` generated requests per endpoint (``ENDPOINTS``), half valid, half not:
    the count, the count by status, the 5xx and the 4xx that do not name the problem."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings

    schema = schemathesis.openapi.from_url(url + "/docs.json")
    seen: dict[str, Any] = {"requests": 0, "by_status": {}, "server_errors": [], "unnamed": []}
    operations = [op.ok() for op in schema.get_all_operations() if op.ok().path in ENDPOINTS]
    assert {op.path for op in operations} == set(ENDPOINTS)
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
