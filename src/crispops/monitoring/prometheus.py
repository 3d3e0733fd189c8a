"""Each arm's error rate and p99 latency from Prometheus, for a rollout's analysis.

When ``rollout.prometheus_url`` is set, :func:`arm_metrics` asks Prometheus' HTTP API
(``GET /api/v1/query``, one instant query each, evaluated at the window's end) for
what the model services expose on ``/metrics``, summed over every scraped series of
each model tag (narrowed by ``rollout.prometheus_selector``):

- requests: ``increase(crispops_predictions_total[W])``, and errors the same with
  ``outcome="error"``; their ratio is the arm's error rate;
- p99: ``histogram_quantile(0.99, ...rate(crispops_predict_seconds_bucket[W]))``,
  interpolated within the histogram's buckets (one observation per answered batch).

A counter's first scrape is its baseline, so requests answered before Prometheus first
saw a series are not counted. Prometheus unreachable, answering an error or something
that is not its API's JSON is a :class:`PrometheusError` naming the address and the
query; an arm without any series in the window is reported as such (the caller's
"wait"). Nothing here imports the service.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from crispops.errors import CrispopsError

#: The service's metric names (crispops.serving.service), as Prometheus stores them.
PREDICTIONS = "crispops_predictions_total"
LATENCY_BUCKETS = "crispops_predict_seconds_bucket"


class PrometheusError(CrispopsError, RuntimeError):
    """Prometheus could not answer a query; the message names the address and why."""


@dataclass(frozen=True)
class ArmMetrics:
    """One arm over the window, as Prometheus saw it."""

    requests: float
    errors: float
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests > 0 else 0.0


@dataclass(frozen=True)
class LiveMetrics:
    """Both arms' metrics from Prometheus (``arms`` by model tag; a tag Prometheus has
    no series of is missing)."""

    url: str
    window: str
    arms: dict[str, ArmMetrics]


def _matchers(selector: str, *extra: str) -> str:
    parts = [p for p in (selector.strip().strip("{}").strip(), *extra) if p]
    return "{" + ",".join(parts) + "}" if parts else ""


def queries(window_s: float, selector: str = "") -> dict[str, str]:
    """The PromQL for requests, errors and p99 per model tag over ``window_s`` seconds."""
    w = f"{max(1, round(window_s))}s"
    every = _matchers(selector)
    errors = _matchers(selector, 'outcome="error"')
    return {
        "requests": f"sum by (model_tag) (increase({PREDICTIONS}{every}[{w}]))",
        "errors": f"sum by (model_tag) (increase({PREDICTIONS}{errors}[{w}]))",
        "p99": (
            "histogram_quantile(0.99, sum by (model_tag, le) "
            f"(rate({LATENCY_BUCKETS}{every}[{w}])))"
        ),
    }


class Prometheus:
    """A small client for ``/api/v1/query``: instant vectors by one label."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, promql: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        """An instant query's vector: (labels, value) per series."""
        import httpx

        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        where = f"Prometheus at {self.url}"
        try:
            resp = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=self.timeout_s)
        except httpx.TimeoutException:
            raise PrometheusError(
                f"{where}: no answer within {self.timeout_s:g} s (rollout.prometheus_timeout_s)"
            ) from None
        except httpx.HTTPError as exc:
            raise PrometheusError(
                f"{where} is not reachable ({type(exc).__name__}: {exc}); check "
                "rollout.prometheus_url"
            ) from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PrometheusError(
                f"{where}: answered {resp.status_code} with something that is not the "
                f"Prometheus API's JSON ({resp.text[:200]!r}); is it a Prometheus?"
            )
        if body.get("status") != "success":
            raise PrometheusError(
                f"{where} rejected the query {promql!r}: {body.get('errorType', 'error')}: "
                f"{body.get('error', resp.text[:200])} (check rollout.prometheus_selector)"
            )
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            raise PrometheusError(f"{where}: expected an instant vector for {promql!r}")
        out = []
        for item in data.get("result") or []:
            try:
                labels = {str(k): str(v) for k, v in item["metric"].items()}
                value = float(item["value"][1])
            except (KeyError, IndexError, TypeError, ValueError, AttributeError):
                raise PrometheusError(
                    f"{where}: a result of {promql!r} is not a (labels, value) sample: "
                    f"{str(item)[:200]}"
                ) from None
            out.append((labels, value))
        return out


def arm_metrics(
    url: str,
    tags: list[str],
    window_s: float,
    window: str,
    at: float | None = None,
    selector: str = "",
    timeout_s: float = 10.0,
) -> LiveMetrics:
    """Requests, errors and p99 for each of ``tags`` over the window ending at ``at``."""
    prom = Prometheus(url, timeout_s)
    q = queries(window_s, selector)
    by_query = {
        name: {labels.get("model_tag", ""): v for labels, v in prom.query(promql, at)}
        for name, promql in q.items()
    }
    arms = {}
    for tag in tags:
        if tag not in by_query["requests"]:
            continue
        p99 = by_query["p99"].get(tag)
        arms[tag] = ArmMetrics(
            requests=by_query["requests"][tag],
            errors=by_query["errors"].get(tag, 0.0),
            p99_ms=p99 * 1000.0 if p99 is not None and math.isfinite(p99) else None,
        )
    return LiveMetrics(prom.url, window, arms)
