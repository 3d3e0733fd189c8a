"""A served model's traffic without a server: prediction records written straight into a
project's prediction log, as the service writes them, and labels returned for them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd


def training_rows(project: Path) -> pd.DataFrame:
    """The rows the champion's run ingested (features, request fields and label)."""
    from crispops.champion import read_champion
    from crispops.config import load_settings

    s = load_settings(project)
    champ = read_champion(s.champion_file)
    assert champ is not None, f"{project}: no champion"
    found = sorted((s.state_path / "runs" / champ.run_id).glob("*/ingest/dataset"))
    assert found, f"{project}: no ingested dataset for run {champ.run_id}"
    return pd.read_parquet(found[-1])


def log_predictions(
    project: Path,
    rows: pd.DataFrame,
    *,
    end: datetime | None = None,
    spread: timedelta = timedelta(hours=12),
    model_tag: str | None = None,
    sink: Any = None,
) -> pd.DataFrame:
    """Score ``rows`` with the champion and log one record per row, timed evenly over
    ``spread`` before ``end``, into ``sink`` (default: the project's parquet log); return
    the records (request_id, prediction, score, label column of ``rows`` if any)."""
    import joblib
    import numpy as np

    from crispops.champion import read_champion
    from crispops.config import load_settings
    from crispops.monitoring.drift import model_scores
    from crispops.monitoring.store import ParquetSink, PredictionRecord
    from crispops.steps.evaluate import model_columns
    from crispops.steps.train import to_frame

    s = load_settings(project)
    champ = read_champion(s.champion_file)
    assert champ is not None
    model = joblib.load(champ.model_file)
    numeric, categorical = model_columns(model)
    X = to_frame(rows, numeric, categorical)
    task = s.data.task
    scores = model_scores(model, X, task)
    preds = model.predict(X)
    proba = model.predict_proba(X) if task != "regression" else None
    end = end or datetime.now(UTC)
    n = len(rows)
    step = spread / max(n, 1)
    records = []
    for i in range(n):
        inputs: dict[str, Any] = {}
        for c in numeric:
            v = X[c].iloc[i]
            inputs[c] = None if pd.isna(v) else float(v)
        for c in categorical:
            inputs[c] = X[c].iloc[i]
        records.append(
            PredictionRecord(
                request_id=uuid.uuid4().hex,
                ts=end - spread + step * i,
                model_tag=model_tag or champ.model_tag,
                endpoint="/predict",
                inputs=inputs,
                prediction=preds[i].item() if hasattr(preds[i], "item") else preds[i],
                probabilities=(
                    None
                    if proba is None
                    else {str(c): float(p) for c, p in zip(model.classes_, proba[i], strict=True)}
                ),
                score=float(scores[i]),
            )
        )
    (sink or ParquetSink(s.monitoring_path)).write_predictions(records)
    out = pd.DataFrame(
        {
            "request_id": [r.request_id for r in records],
            "prediction": [r.prediction for r in records],
            "score": np.asarray(scores, dtype=float),
        }
    )
    if s.data.label in rows:
        out["label"] = rows[s.data.label].to_numpy()
    return out


def return_labels(
    project: Path, request_ids: list[str], labels: list[Any], sink: Any = None
) -> None:
    from crispops.config import load_settings
    from crispops.monitoring.store import FeedbackRecord, ParquetSink

    s = load_settings(project)
    now = datetime.now(UTC)
    (sink or ParquetSink(s.monitoring_path)).write_feedback(
        [
            FeedbackRecord(rid, lab.item() if hasattr(lab, "item") else lab, now, now)
            for rid, lab in zip(request_ids, labels, strict=True)
        ]
    )
