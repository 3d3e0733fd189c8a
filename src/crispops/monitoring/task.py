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

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from crispops.config import Settings
from crispops.errors import CrispopsError

RETRAIN_MODULE = "crispops.orchestration.retrain"


class RetrainFailedError(CrispopsError, RuntimeError):
    """The retraining run the monitor started did not complete."""


def _clean_env() -> dict[str, str]:
    # Inside a KFP executor, _KFP_RUNTIME=true strips kfp.dsl and kfp.Client down to
    # what a component needs at run time: the training pipeline can then be neither
    # imported nor compiled. The retraining runs in a child process without it.
    environ = dict(os.environ)
    environ.pop("_KFP_RUNTIME", None)
    return environ


def _child(settings: Settings, *args: str) -> str:
    proc = subprocess.run(
        # By module name: the monitor never imports the orchestration layer above it.
        [sys.executable, "-m", RETRAIN_MODULE, *args],
        input=settings.to_json(),
        capture_output=True,
        text=True,
        env=_clean_env(),
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise RetrainFailedError(f"retraining ({' '.join(args)}) failed: {tail[0]}")
    return proc.stdout


def train_here(settings: Settings) -> Callable[[str], Any]:
    """``run_id -> result``: the training pipeline run on this machine (kfp.local, the
    same code path as ``crispops run``), in a child process; fails when the run does."""

    def train(run_id: str) -> Any:
        return json.loads(_child(settings, "train", run_id).strip().splitlines()[-1])

    return train


def submit_there(settings: Settings, host: str) -> Callable[[str], Any]:
    """``run_name -> result``: the training pipeline submitted to ``host`` (a child
    process, like :func:`train_here`); the result has ``run_id`` and ``url``."""

    def submit(run_name: str) -> Any:
        out = _child(settings, "submit", run_name, host).strip().splitlines()[-1]
        return SimpleNamespace(**json.loads(out))

    return submit


def monitor_task(
    settings: Settings,
    *,
    window: str = "",
    end: str = "",
    act: bool = False,
    report_out: Path | None = None,
) -> dict[str, Any]:
    """Judge one window of the prediction log (``window`` long, ending at ``end``, ISO
    8601; empty: ``[monitoring] window`` and now); return the figures a pipeline records.

    Returns ``{"decision": {...}, "figures": {name: number}, "report": path, "action":
    message or None}``.
    """
    from crispops.monitoring import watch

    result = watch.monitor(settings, window=window or None, end=watch.parse_end(end or None))
    if report_out is not None:
        report_out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.html_path, report_out)
    action = None
    if act:
        host = settings.cluster.kfp_host
        action = watch.act(
            settings,
            result,
            train_local=train_here(settings),
            submit=submit_there(settings, host) if host else None,
        ).message
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
