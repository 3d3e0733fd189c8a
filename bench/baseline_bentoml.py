"""Baseline of the serving benchmark: a DEFAULT BentoML service for the same model.

Default configuration on purpose (no adaptive batching, one worker, access log
on): what a first BentoML service for a scikit-learn model looks like. It loads
the champion's model file (path in ``BENCH_MODEL_FILE``) and predicts through a
pandas DataFrame. Run by ``bench.serving`` as
``python -m bentoml serve bench.baseline_bentoml:Default`` from the project root.
"""

# No `from __future__ import annotations`: BentoML reads the API's annotations.

import os
from typing import Any

import bentoml

MODEL_FILE_ENV = "BENCH_MODEL_FILE"


@bentoml.service
class Default:
    def __init__(self) -> None:
        import joblib

        self.model = joblib.load(os.environ[MODEL_FILE_ENV])
        self.columns = [str(c) for c in self.model.feature_names_in_]
        self.classes = [str(c) for c in self.model.classes_]

    @bentoml.api
    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import pandas as pd

        frame = pd.DataFrame(records, columns=self.columns)
        proba = self.model.predict_proba(frame)
        return [
            {
                "prediction": self.classes[int(p.argmax())],
                "probabilities": {c: float(x) for c, x in zip(self.classes, p, strict=True)},
            }
            for p in proba
        ]
