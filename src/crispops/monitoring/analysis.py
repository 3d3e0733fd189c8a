"""Judge a challenger against the champion on live traffic: pass, fail or wait.

:func:`analyze` compares the two arms of a shadow or canary rollout over a window of
the prediction log (records with ``model_tag``, ``score``, ``endpoint``, ``ts``; an
``error`` / ``outcome`` column and ``latency_s`` when the service logs them) and
the labels that came back. Each check that can be measured is one reason to fail:

- error rate: the challenger's may exceed the champion's by ``max_error_rate_delta``;
- p99 latency (when logged): at most ``max_p99_ratio`` times the champion's;
- distance between the arms' score distributions: PSI at most ``max_distance``
  (bins from the champion's quantiles);
- shadow agreement (records both models scored, matched by ``request_id``; the
  challenger's shadow record may carry ``request_id + "#shadow"``, since the log
  keeps one record per id): at least ``min_agreement``;
- the realized metric per arm, once ``min_labels`` labels came back for each: the
  challenger's may be worse by ``max_metric_drop``.

With ``rollout.prometheus_url`` set, the error rate and p99 come from Prometheus
instead (the services' own ``crispops_predictions_total`` and ``crispops_predict_seconds``
per model tag, :mod:`crispops.monitoring.prometheus`), the rest from the log; an arm
Prometheus has no series of is ``wait``.

Fewer than ``min_requests`` records in either arm is ``wait``, never ``pass``: a
rollout steps on only after a ``pass``. Pure functions over DataFrames: the cluster
loop takes any ``Callable[[], Verdict]`` as its analysis, so tests feed it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from crispops.config import RolloutSettings, Settings, duration_seconds
from crispops.monitoring.prometheus import PREDICTIONS, LiveMetrics, arm_metrics
from crispops.monitoring.store import ParquetSink, Sink, labeled, now

Mode = Literal["shadow", "canary"]
Status = Literal["pass", "fail", "wait"]

#: What a shadowed record's request id ends with (the champion's record has the bare id).
SHADOW_SUFFIX = "#shadow"
#: Outcomes that are not errors, when the log has an ``outcome`` column.
OK_OUTCOMES = frozenset({"", "ok", "success", "200"})


@dataclass(frozen=True)
class Window:
    """What one analysis looks at: the log's records for both arms, and the labels."""

    predictions: pd.DataFrame
    champion: str
    challenger: str
    mode: Mode = "canary"
    task: str = "binary"
    feedback: pd.DataFrame | None = None
    live: LiveMetrics | None = None  # error rate and p99 per arm from Prometheus


@dataclass(frozen=True)
class Verdict:
    status: Status
    reasons: list[str]
    measurements: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return f"{self.status}: " + "; ".join(self.reasons)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (quantile bins)."""
    ref = reference[np.isfinite(reference)]
    cur = current[np.isfinite(current)]
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # a constant reference: is the other constant and equal?
        return 0.0 if np.all(cur == ref[0]) else float("inf")
    edges[0], edges[-1] = -np.inf, np.inf
    eps = 1e-4
    r = np.histogram(ref, edges)[0] / len(ref) + eps
    c = np.histogram(cur, edges)[0] / len(cur) + eps
    return float(np.sum((c - r) * np.log(c / r)))


def _errors(df: pd.DataFrame) -> pd.Series | None:
    if "error" in df.columns:
        return df["error"].fillna(False).astype(bool)
    if "outcome" in df.columns:
        return ~df["outcome"].fillna("ok").astype(str).str.lower().isin(OK_OUTCOMES)
    return None


def _pair_key(df: pd.DataFrame) -> pd.Series:
    """The request a record answered: its ``request_id`` without a ``#shadow`` suffix
    (the log keeps one record per request id, so a shadowed one carries the suffix)."""
    return df["request_id"].astype(str).str.removesuffix(SHADOW_SUFFIX)


def _p99(df: pd.DataFrame) -> float | None:
    """The arm's p99 latency in milliseconds, from the log's ``latency_s``."""
    if "latency_s" not in df.columns:
        return None
    values = pd.to_numeric(df["latency_s"], errors="coerce").dropna() * 1000.0
    return None if values.empty else float(np.quantile(values, 0.99))


def _value(text: Any) -> Any:
    if isinstance(text, str):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _realized(df: pd.DataFrame, task: str) -> tuple[str, float, bool]:
    """(metric, value, higher is better) on labelled records of one arm."""
    from sklearn import metrics as M

    y = [_value(v) for v in df["label"]]
    if task == "regression":
        err = np.asarray(df["score"], dtype=float) - np.asarray(y, dtype=float)
        return "rmse", float(np.sqrt(np.mean(err**2))), False
    if task == "binary" and len(set(map(str, y))) == 2:
        classes = sorted(set(map(str, y)))
        positive = [str(v) == classes[-1] for v in y]
        return "roc_auc", float(M.roc_auc_score(positive, df["score"])), True
    predicted = [str(_value(v)) for v in df["prediction"]]
    return (
        "accuracy",
        float(np.mean([p == str(t) for p, t in zip(predicted, y, strict=True)])),
        True,
    )


def analyze(window: Window, limits: RolloutSettings | None = None) -> Verdict:
    """The challenger's arm against the champion's: see the module docstring."""
    limits = limits or RolloutSettings()
    df = window.predictions
    champ = df[df["model_tag"] == window.champion]
    chall = df[df["model_tag"] == window.challenger]
    m: dict[str, Any] = {"champion_requests": len(champ), "challenger_requests": len(chall)}
    short = [
        f"{arm} has {len(rows)} of the {limits.min_requests} requests needed"
        for arm, rows in (("champion", champ), ("challenger", chall))
        if len(rows) < limits.min_requests
    ]
    if short:
        return Verdict("wait", short, m)
    live = window.live
    if live is not None:
        m["live_source"] = live.url
        unseen = [
            f"the {arm} ({tag})"
            for arm, tag in (("champion", window.champion), ("challenger", window.challenger))
            if tag not in live.arms
        ]
        if unseen:
            return Verdict(
                "wait",
                [
                    f"Prometheus at {live.url} has no {PREDICTIONS} series of "
                    f"{' or '.join(unseen)} over the last {live.window}: not scraped yet, "
                    "or rollout.prometheus_selector matches none of them"
                ],
                m,
            )

    failures: list[str] = []
    notes: list[str] = []

    err_champ, err_chall = _errors(champ), _errors(chall)
    if err_champ is not None and err_chall is not None:
        ok_champ, ok_chall = champ[~err_champ], chall[~err_chall]
    else:
        ok_champ, ok_chall = champ, chall
    rates: tuple[float, float] | None = None
    if live is not None:
        a_live, b_live = live.arms[window.champion], live.arms[window.challenger]
        rates = (a_live.error_rate, b_live.error_rate)
        m.update(champion_live_requests=a_live.requests, challenger_live_requests=b_live.requests)
    elif err_champ is not None and err_chall is not None:
        rates = (float(err_champ.mean()), float(err_chall.mean()))
    if rates is not None:
        a, b = rates
        m.update(champion_error_rate=a, challenger_error_rate=b)
        line = f"error rate {b:.2%} vs champion {a:.2%} (max +{limits.max_error_rate_delta:.2%})"
        if live is not None:
            line += " (Prometheus)"
        (failures if b - a > limits.max_error_rate_delta else notes).append(line)
    else:
        notes.append("error rate not logged")

    if live is not None:
        p_champ = live.arms[window.champion].p99_ms
        p_chall = live.arms[window.challenger].p99_ms
    else:
        p_champ, p_chall = _p99(ok_champ), _p99(ok_chall)
    for key, value in (("champion_p99_ms", p_champ), ("challenger_p99_ms", p_chall)):
        if value is not None:
            m[key] = value
    if p_champ is not None and p_chall is not None and p_champ > 0:
        ratio = p_chall / p_champ
        m["p99_ratio"] = ratio
        line = (
            f"p99 {p_chall:.1f} ms vs {p_champ:.1f} ms "
            f"({ratio:.2f}x, max {limits.max_p99_ratio:g}x)"
        ) + (" (Prometheus)" if live is not None else "")
        (failures if ratio > limits.max_p99_ratio else notes).append(line)
    else:
        notes.append("latency not in Prometheus" if live is not None else "latency not logged")

    s_champ = ok_champ["score"].to_numpy(dtype=float)
    s_chall = ok_chall["score"].to_numpy(dtype=float)
    distance = psi(s_champ, s_chall)
    if math.isnan(distance):
        notes.append("no scores to compare")
    else:
        m["psi"] = distance
        line = f"score PSI between arms {distance:.3f} (max {limits.max_distance:g})"
        (failures if distance > limits.max_distance else notes).append(line)

    if window.mode == "shadow":
        pairs = ok_champ.assign(pair=_pair_key(ok_champ)).merge(
            ok_chall.assign(pair=_pair_key(ok_chall)), on="pair", suffixes=("_a", "_b")
        )
        m["shadow_pairs"] = len(pairs)
        if len(pairs) >= limits.min_requests:
            if window.task == "regression":
                tol = 0.1 * float(np.nanstd(s_champ) or 1.0)
                same = np.abs(pairs["score_a"] - pairs["score_b"]) <= tol
            else:
                same = pairs["prediction_a"].astype(str) == pairs["prediction_b"].astype(str)
            agreement = float(np.mean(same))
            m["agreement"] = agreement
            line = f"shadow agreement {agreement:.1%} (min {limits.min_agreement:.0%})"
            (failures if agreement < limits.min_agreement else notes).append(line)
        else:
            notes.append(f"agreement not measured ({len(pairs)} shadow pairs)")

    if window.feedback is not None and not window.feedback.empty:
        got = labeled(pd.concat([ok_champ, ok_chall]), window.feedback)
        a_rows = got[got["model_tag"] == window.champion]
        b_rows = got[got["model_tag"] == window.challenger]
        if min(len(a_rows), len(b_rows)) >= limits.min_labels:
            name, a, higher = _realized(a_rows, window.task)
            _, b, _ = _realized(b_rows, window.task)
            drop = (a - b) if higher else (b - a)
            m.update(metric=name, champion_metric=a, challenger_metric=b)
            line = (
                f"realized {name} {b:.4f} vs champion {a:.4f} (max drop {limits.max_metric_drop:g})"
            )
            (failures if drop > limits.max_metric_drop else notes).append(line)
        else:
            notes.append(f"too few labels to compare metrics ({len(a_rows)}, {len(b_rows)})")
    else:
        notes.append("no labels yet")

    if failures:
        return Verdict("fail", failures + notes, m)
    return Verdict("pass", notes, m)


def sink_for(settings: Settings) -> Sink:
    """The project's prediction log, as the service writes it."""
    if settings.monitoring.sink == "postgres":
        from crispops.config import env
        from crispops.errors import SettingsError
        from crispops.monitoring.store import PostgresSink

        dsn = env(settings.monitoring.dsn_env)
        if not dsn:
            raise SettingsError(
                f"monitoring.sink = postgres but ${settings.monitoring.dsn_env} is not set"
            )
        return PostgresSink(dsn, settings.monitoring.table_prefix)
    return ParquetSink(settings.monitoring_path)


def window_from_log(
    settings: Settings,
    champion: str,
    challenger: str,
    mode: Mode = "canary",
    window: str | None = None,
    end: datetime | None = None,
) -> Window:
    """The last ``window`` (default rollout.window) of the project's prediction log, and
    of Prometheus' metrics when ``rollout.prometheus_url`` is set (a
    :class:`~crispops.monitoring.prometheus.PrometheusError` when it cannot answer)."""
    end = end or now()
    span = window or settings.rollout.window
    seconds = duration_seconds(span)
    start = end - timedelta(seconds=seconds)
    live = None
    r = settings.rollout
    if r.prometheus_url:
        live = arm_metrics(
            r.prometheus_url,
            [champion, challenger],
            seconds,
            span,
            at=end.timestamp(),
            selector=r.prometheus_selector,
            timeout_s=r.prometheus_timeout_s,
        )
    sink = sink_for(settings)
    try:
        predictions = sink.read_predictions(start, end)
        feedback = sink.read_feedback()
    finally:
        sink.close()
    return Window(predictions, champion, challenger, mode, settings.data.task, feedback, live)
