"""One scheduled monitoring run, as the ``monitoring`` KFP pipeline's component runs it.

Settings in, files out (the lifecycle seam for the monitor): judge the window with
:func:`crispops.monitoring.watch.monitor`, copy the HTML report and the figures to the
component's output paths, and, with ``act``, carry out a retrain decision through
:func:`crispops.monitoring.watch.act` (with ``cluster.kfp_host`` set, a submitted
training run; else a local one, the same code path as ``crispops run``). Acting is
idempotent per (model tag, window) through the actions ledger, so a schedule that
fires twice for one window trains once.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from crispops.config import Settings
from crispops.errors import CrispopsError


class RetrainFailedError(CrispopsError, RuntimeError):
    """The retraining run the monitor started did not complete."""


def train_here(settings: Settings) -> Any:
    """A callable that runs the training pipeline here and fails when the run does."""

    def train(run_id: str) -> Any:
        from crispops.orchestration.local import run_training

        result = run_training(settings, run_id=run_id)
        if not result.ok:
            raise RetrainFailedError(
                f"retraining run {run_id} failed at {result.failed_step or '?'} (log: {result.log})"
            )
        return result

    return train


def monitor_task(
    settings: Settings,
    *,
    window: str = "",
    act: bool = False,
    report_out: Path | None = None,
) -> dict[str, Any]:
    """Judge one window of the prediction log; return the figures a pipeline records.

    Returns ``{"decision": {...}, "figures": {name: number}, "report": path, "action":
    message or None}``.
    """
    from crispops.monitoring import watch

    result = watch.monitor(settings, window=window or None)
    if report_out is not None:
        report_out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.html_path, report_out)
    action = None
    if act:
        action = watch.act(settings, result, train_local=train_here(settings)).message
    return {
        "decision": result.decision,
        "figures": figures(result.report),
        "report": str(result.json_path),
        "action": action,
    }


def figures(report: dict[str, Any]) -> dict[str, float]:
    """The report's headline numbers (KFP metrics take numbers only)."""
    out: dict[str, float] = {}
    preds = report.get("predictions") or {}
    labels = report.get("labels") or {}
    features = report.get("features") or {}
    out["rows"] = float(preds.get("rows") or 0)
    out["labels"] = float(labels.get("joined") or 0)
    out["features_drifted"] = float(sum(bool(f.get("drifted")) for f in features.values()))
    out["drifted_share"] = float(report.get("drifted_share") or 0.0)
    if preds.get("psi") is not None:
        out["prediction_psi"] = float(preds["psi"])
    for name, value in (report.get("realized") or {}).items():
        if isinstance(value, int | float):
            out[f"realized_{name}"] = float(value)
    retrain = (report.get("decision") or {}).get("retrain")
    out["retrain"] = -1.0 if retrain is None else float(bool(retrain))
    return out
