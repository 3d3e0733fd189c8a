from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np

from crispops.contract import FeatureContract, FieldSpec
from crispops.serving.packaging import MODEL_FILE
from crispops.steps.train import to_frame, train
from tests.unit.steps.conftest import make_contract, make_mixed_frame

NUM = ["x1", "x2", "n1", "noise", "req"]


def test_predictor_feeds_the_fast_path_in_its_own_column_order(tmp_path: Path) -> None:
    """The metadata lists the target-encoded column first; the fast path takes its blocks'
    order (one-hot, then target-encoded). Both serving paths answer as the Pipeline."""
    df = make_mixed_frame("multiclass", n=400)
    categorical = ["many", "cat"]
    model, info = train(
        df,
        name="c",
        estimator="logistic_regression",
        search={},
        numeric=NUM,
        categorical=categorical,
        label="y",
        task="multiclass",
        metric="macro_f1",
        max_onehot_categories=10,
    )
    assert info.categorical_encoding == {"many": "target", "cat": "onehot"}
    joblib.dump(model, tmp_path / MODEL_FILE)
    base = make_contract()
    contract = FeatureContract(
        feature_service=base.feature_service,
        entity_keys=base.entity_keys,
        features=(*base.features, FieldSpec("many", "string", "fv")),
        request_fields=base.request_fields,
    )
    meta = {
        "contract": contract.to_dict(),
        "task": "multiclass",
        "numeric": NUM,
        "categorical": categorical,
        "categorical_encoding": info.categorical_encoding,
    }
    # imported here, not at collection: importing the service module sets prometheus_client
    # up in single-process mode, which hides the metrics of services built later in-process
    from crispops.serving.service import Predictor

    predictor = Predictor(tmp_path, meta, "m:1")
    assert predictor.fast is not None and predictor.fast.categorical == ["cat", "many"]
    probe = df.iloc[:30].copy()
    probe.loc[probe.index[:5], "many"] = "never-seen"
    probe.loc[probe.index[5:10], "many"] = None
    probe.loc[probe.index[10:15], "cat"] = None
    rows = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in probe[NUM + categorical].to_dict("records")
    ]
    expected = model.predict_proba(to_frame(probe, NUM, categorical))
    fast = np.array([list(p.probabilities.values()) for p in predictor.predict_rows(rows)])
    predictor.fast = None  # the Pipeline itself
    slow = np.array([list(p.probabilities.values()) for p in predictor.predict_rows(rows)])
    np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-6)  # answers round to 6 places
    np.testing.assert_array_equal(fast, slow)


def test_the_worker_freezes_what_it_loaded_and_collects_less_often() -> None:
    import gc

    from crispops.serving.service import GC_THRESHOLDS, tune_gc

    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's defaults (a service made in process tunes it)
    frozen = gc.get_freeze_count()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > 700
        assert gc.get_freeze_count() > frozen  # every object alive now is out of the sweeps
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
