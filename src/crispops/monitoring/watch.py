"""One monitoring run: a window of the prediction log judged against the champion.

:func:`monitor` reads the predictions the champion answered in the window (and the
labels returned for them), measures drift and realized metrics, applies the
retraining policy and writes, each atomically under ``<monitoring_path>``:

- ``reports/<window-end>.json`` and ``.html`` (the report),
- ``metrics/crispops_monitor.prom`` (Prometheus textfile-exporter gauges).

:func:`act` carries out a retrain decision once per (model tag, window), recording it
in ``actions.json``. Nothing here imports typer; the CLI and the KFP component call it.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crispops.champion import Champion, read_champion
from crispops.config import _DURATION, TASK_METRICS, Settings, duration_seconds, env
from crispops.errors import CrispopsError, UserError
from crispops.io import read_json, write_json, write_text
from crispops.monitoring import policy
from crispops.monitoring.drift import drifted_share, feature_drift, prediction_drift
from crispops.monitoring.realized import realized_metrics
from crispops.monitoring.store import ParquetSink, PostgresSink, Sink, expand, labeled


class MonitorError(CrispopsError, RuntimeError):
    """A monitoring run cannot start (no champion, no profile, no sink); says why."""


@dataclass
class MonitorResult:
    report: dict[str, Any]
    json_path: Path
    html_path: Path
    prom_path: Path

    @property
    def decision(self) -> dict[str, Any]:
        return dict(self.report["decision"])


def open_sink(settings: Settings) -> Sink:
    """The prediction log's sink as ``[monitoring]`` names it."""
    m = settings.monitoring
    if m.sink == "postgres":
        dsn = env(m.dsn_env)
        if not dsn:
            raise MonitorError(
                f"monitoring.sink is postgres but ${m.dsn_env} holds no DSN "
                "(set it, or monitoring.dsn_env to the variable that does)"
            )
        return PostgresSink(dsn, prefix=m.table_prefix)
    return ParquetSink(settings.monitoring_path)


def parse_end(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        end = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--end {text!r}: give an ISO 8601 time, e.g. 2026-12-02T12:00Z") from None
    return end if end.tzinfo else end.replace(tzinfo=UTC)


def window_bounds(window: str, end: datetime) -> tuple[datetime, datetime]:
    if not re.match(_DURATION, window):
        raise UserError(f"--window {window!r}: give a duration such as 90m, 6h, 1d or 2w")
    return end - timedelta(seconds=duration_seconds(window)), end


def champion_profiles(champ: Champion) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The champion's training profile and its holdout score profile (None if absent),
    from the files packaged beside its model."""
    folder = Path(champ.model_file).parent
    path = folder / "profile.json"
    if not path.is_file():
        raise MonitorError(
            f"the champion {champ.model_tag} has no training profile ({path}): retrain it "
            "with this version of crispops"
        )
    profile = read_json(path)
    decision_file = folder / "decision.json"
    scores = read_json(decision_file).get("holdout_scores") if decision_file.is_file() else None
    return profile, scores or None


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def stamp(end: datetime) -> str:
    return end.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def monitor(
    settings: Settings,
    *,
    window: str | None = None,
    end: datetime | None = None,
    sink: Sink | None = None,
) -> MonitorResult:
    m = settings.monitoring
    window = window or m.window
    end = (end or datetime.now(UTC)).astimezone(UTC)
    start, end = window_bounds(window, end)
    champ = read_champion(settings.champion_file)
    if champ is None:
        raise MonitorError(
            f"no champion in {settings.project_dir}: nothing serves, nothing to monitor "
            "(`crispops run` first)"
        )
    profile, score_ref = champion_profiles(champ)
    own = sink is None
    sink = sink or open_sink(settings)
    try:
        logged = sink.read_predictions(start, end)
        feedback = sink.read_feedback()
    finally:
        if own:
            sink.close()
    preds = logged[logged["model_tag"] == champ.model_tag].reset_index(drop=True)
    inputs = expand(preds, "inputs")
    inputs_used = champ.inputs or list(profile.get("features", {}))
    drift = feature_drift(inputs, profile, m.drift_psi, features=inputs_used)
    pdrift = prediction_drift(preds["score"], score_ref)
    joined = labeled(preds, feedback)
    classes = list((profile.get("label") or {}).get("classes") or {}) or None
    realized = realized_metrics(joined, settings.data.task, classes)
    higher = TASK_METRICS[settings.data.task].get(champ.metric, True)
    ledger_path = settings.monitoring_path / "actions.json"
    actions = policy.read_ledger(ledger_path)
    figures = policy.Figures(
        rows=len(preds),
        features=len(drift),
        drifted=sorted(n for n, d in drift.items() if d.drifted),
        prediction_psi=pdrift.psi,
        labels=realized.labels,
        metric=champ.metric,
        realized=realized.metrics.get(champ.metric),
        holdout=champ.metrics.get(champ.metric, champ.score),
        higher_is_better=higher,
    )
    thresholds = policy.Thresholds.from_settings(m)
    decision = policy.decide(
        figures, thresholds, policy.last_action_time(actions), datetime.now(UTC)
    )
    key = policy.action_key(champ.model_tag, window, end)
    done = policy.find_action(actions, key)
    report = _clean(
        {
            "model_tag": champ.model_tag,
            "task": settings.data.task,
            "window": {"start": start.isoformat(), "end": end.isoformat(), "length": window},
            "features": {n: d.to_dict() for n, d in sorted(drift.items())},
            "drifted_share": drifted_share(drift),
            "predictions": {
                **pdrift.to_dict(),
                "logged": len(logged),
                "other_models": int(len(logged) - len(preds)),
            },
            "labels": {
                "joined": realized.labels,
                "share": realized.labels / len(preds) if len(preds) else 0.0,
            },
            "realized": realized.metrics,
            "realized_skipped": realized.skipped,
            "holdout": {"metric": champ.metric, **champ.metrics},
            "decision": {**decision.to_dict(), "action_key": key, "acted": done},
            "thresholds": {
                "drift_psi": m.drift_psi,
                "drift_share": m.drift_share,
                "prediction_psi": m.prediction_psi,
                "metric_drop": m.metric_drop,
                "min_rows": m.min_rows,
                "min_labels": m.min_labels,
                "cooldown": m.cooldown,
            },
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    from crispops.monitoring.report import html_report, prometheus_text

    root = settings.monitoring_path
    json_path = write_json(root / "reports" / f"{stamp(end)}.json", report)
    html_path = write_text(
        root / "reports" / f"{stamp(end)}.html",
        html_report(report, inputs, profile, preds, score_ref),
    )
    prom_path = write_text(root / "metrics" / "crispops_monitor.prom", prometheus_text(report))
    return MonitorResult(report, json_path, html_path, prom_path)


# Acting ---------------------------------------------------------------------------------


@dataclass
class ActionResult:
    acted: bool
    message: str
    entry: dict[str, Any] = field(default_factory=dict)


def act(
    settings: Settings,
    result: MonitorResult,
    *,
    train_local: Callable[[str], Any],
    submit: Callable[[str], Any] | None,
) -> ActionResult:
    """Carry out a retrain decision once per (model tag, window).

    ``train_local(run_id)`` runs the training pipeline here; with ``cluster.kfp_host``
    set, ``submit(run_name)`` starts it on the cluster instead (the caller, which sits
    above the monitor, passes crispops' submit of the training pipeline). The ledger
    entry is written before the run starts and completed after it, so a crash mid-run
    is not retried for that window.
    """
    report = result.report
    decision = report["decision"]
    key = str(decision["action_key"])
    path = settings.monitoring_path / "actions.json"
    done = policy.find_action(policy.read_ledger(path), key)
    if done is not None:
        return ActionResult(
            False,
            f"already acted on this window ({key}) at {done.get('at')}: "
            f"{done.get('kind')} run {done.get('run_id')} ({done.get('status')}); nothing done",
            done,
        )
    if decision["retrain"] is not True:
        what = "no decision" if decision["retrain"] is None else "no retraining needed"
        return ActionResult(False, f"nothing to do: {what}")
    end = datetime.fromisoformat(report["window"]["end"])
    run_id = f"retrain-{stamp(end)}-{uuid.uuid4().hex[:4]}"
    host = settings.cluster.kfp_host
    entry: dict[str, Any] = {
        "key": key,
        "model_tag": report["model_tag"],
        "window": report["window"],
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reasons": decision["reasons"],
        "kind": "submitted" if host else "local",
        "run_id": run_id,
        "status": "started",
        "report": str(result.json_path),
    }
    policy.record_action(path, entry)
    try:
        if host:
            if submit is None:
                raise MonitorError(f"cluster.kfp_host is {host!r} but nothing submits runs to it")
            submitted = submit(run_id)
            entry["kfp_run_id"] = getattr(submitted, "run_id", None)
            entry["url"] = getattr(submitted, "url", "")
            entry["status"] = "submitted"
        else:
            train_local(run_id)
            entry["status"] = "completed"
            after = read_champion(settings.champion_file)
            entry["champion_after"] = after.model_tag if after else None
            entry["promoted"] = bool(after and after.model_tag != report["model_tag"])
    except BaseException as exc:
        code = getattr(exc, "exit_code", None)
        entry["status"] = "not_worth_serving" if code == 3 else "failed"
        entry["error"] = str(exc) or type(exc).__name__
        policy.record_action(path, entry)
        raise
    policy.record_action(path, entry)
    where = f"submitted to {host}" if host else "trained here"
    return ActionResult(True, f"retraining {where}: run {run_id}", entry)
