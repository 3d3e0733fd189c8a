"""Baseline (a) of the serving benchmark: a bare FastAPI + uvicorn app for the same model.

No crispops code: ``joblib.load`` of the champion's model file (path in the
``BENCH_MODEL_FILE`` environment variable), and ``POST /predict`` that parses the
same ``{"records": [...]}`` body into a pandas DataFrame with the model's columns
and calls ``predict_proba``. Run by ``bench.serving`` as
``python -m uvicorn bench.baseline_fastapi:app`` with uvicorn's defaults.
"""

from __future__ import annotations

import os
from typing import Any

import joblib
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

MODEL_FILE_ENV = "BENCH_MODEL_FILE"

model = joblib.load(os.environ[MODEL_FILE_ENV])
columns = [str(c) for c in model.feature_names_in_]
classes = [str(c) for c in model.classes_]

app = FastAPI(title="bare FastAPI baseline")


class Body(BaseModel):
    records: list[dict[str, Any]]


@app.post("/predict")
def predict(body: Body) -> list[dict[str, Any]]:
    frame = pd.DataFrame(body.records, columns=columns)
    proba = model.predict_proba(frame)
    return [
        {
            "prediction": classes[int(p.argmax())],
            "probabilities": {c: float(x) for c, x in zip(classes, p, strict=True)},
        }
        for p in proba
    ]


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ready"}
