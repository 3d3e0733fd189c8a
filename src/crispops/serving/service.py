"""The champion as a BentoML service.

``make_service(tag)`` builds the service class for one pinned model tag: its
request models come from the feature contract stored with the model, so the
HTTP schema always matches what the model was trained on. A Bento's entry
module is two lines that call it with the champion's tag.
"""

# No `from __future__ import annotations`: BentoML reads the API methods'
# annotations at class creation, and they name models built at run time.

import asyncio
import functools
import gc
import logging
import math
import threading
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
import pandas as pd
from pydantic import Field

from crispops.config import MonitoringSettings, ServingSettings, monitoring_runtime, serving_runtime
from crispops.contract import FeatureContract
from crispops.monitoring.log import Deferred, PredictionLog, make_sink
from crispops.monitoring.store import FeedbackRecord, PredictionRecord, Sink, SinkError
from crispops.serving.batching import bound_batch_wait
from crispops.serving.canary import CanaryFront, Live
from crispops.serving.fastpath import FastPipeline
from crispops.serving.packaging import MODEL_FILE
from crispops.serving.router import (
    Challenger,
    ChallengerError,
    ConfigFile,
    bucket,
    config_path,
    request_ids,
    running_loop,
    split,
    unrouted,
    with_ids,
)
from crispops.serving.schemas import (
    FeedbackAnswer,
    FeedbackError,
    FeedbackIn,
    Metadata,
    Prediction,
    entity_model,
    record_model,
)

log = logging.getLogger("crispops.serving")


class _BadInputAsWarning(logging.Filter):
    """BentoML logs a rejected request (400) as an error with a traceback; a client's
    bad input is not a server error, so it becomes one warning line naming the problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        from bentoml.exceptions import BentoMLException
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
            )
            detail = f"{exc.error_count()} problem(s): {problems}"
        elif isinstance(exc, BentoMLException) and int(exc.error_code) < 500:
            detail = str(exc)
        else:
            return True
        record.msg = f"rejected bad input: {record.getMessage()}: {detail}"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install_log_filter() -> None:
    for name in ("bentoml._internal.server.http_app", "bentoml"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _BadInputAsWarning) for f in logger.filters):
            logger.addFilter(_BadInputAsWarning())


def _metadata_of(tag: str) -> dict[str, Any]:
    return dict(bentoml.models.get(tag).info.metadata)


class Predictor:
    """Everything a worker needs to turn records into predictions (no HTTP here)."""

    def __init__(self, model_dir: Path, metadata: dict[str, Any], model_tag: str) -> None:
        import joblib
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # one BLAS/OpenMP thread per worker: workers share the cores
        self.model = joblib.load(model_dir / MODEL_FILE)
        self.model_tag = model_tag
        self.meta = metadata
        self.contract = _contract_of(metadata)
        self.task: str = metadata["task"]
        self.numeric: list[str] = list(metadata["numeric"])
        self.categorical: list[str] = list(metadata["categorical"])
        self.columns = self.numeric + self.categorical
        self.classes = [str(c) for c in getattr(self.model, "classes_", [])]
        self.fast = FastPipeline.from_pipeline(self.model)
        self._store: Any = None

    # -- prediction ---------------------------------------------------------------
    def frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        data: dict[str, Any] = {}
        for c in self.numeric:
            data[c] = np.array([_num(r.get(c)) for r in rows], dtype="float64")
        for c in self.categorical:
            v = [r.get(c) for r in rows]
            data[c] = np.array([None if x is None else str(x) for x in v], dtype=object)
        return pd.DataFrame(data, columns=self.columns)

    def _run(self, rows: list[dict[str, Any]], method: str) -> np.ndarray:
        if self.fast is None:
            return np.asarray(getattr(self.model, method)(self.frame(rows)))
        # the fast path's column order (one-hot block, then target-encoded block)
        fast = self.fast
        num = np.array([[_num(r.get(c)) for c in fast.numeric] for r in rows], dtype="float64")
        cat = [[r.get(c) for c in fast.categorical] for r in rows]
        return np.asarray(getattr(fast, method)(num.reshape(len(rows), -1), cat))

    def predict_rows(self, rows: list[dict[str, Any]]) -> list[Prediction]:
        if not rows:
            return []
        if self.task == "regression":
            values = self._run(rows, "predict")
            return [Prediction(prediction=float(v), model_tag=self.model_tag) for v in values]
        proba = self._run(rows, "predict_proba")
        out = []
        for p in proba:
            best = int(p.argmax())
            out.append(
                Prediction(
                    prediction=_label(self.model.classes_[best]),
                    probabilities={
                        c: round(float(x), 6) for c, x in zip(self.classes, p, strict=False)
                    },
                    model_tag=self.model_tag,
                )
            )
        return out

    # -- online features ------------------------------------------------------------
    def store(self, runtime: ServingSettings) -> Any:
        if self._store is None:
            from feast import FeatureStore

            if runtime.feature_repo is None:
                raise RuntimeError("no feature repo configured (CRISPOPS_SERVING__FEATURE_REPO)")
            repo = Path(runtime.feature_repo)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if runtime.feature_store_yaml:
                    self._store = FeatureStore(
                        repo_path=str(repo), fs_yaml_file=repo / runtime.feature_store_yaml
                    )
                else:
                    self._store = FeatureStore(repo_path=str(repo))
                self._service = self._store.get_feature_service(self.contract.feature_service)
        return self._store

    def lookup(
        self,
        runtime: ServingSettings,
        rows: list[dict[str, Any]],
        used: list[dict[str, Any]] | None = None,
    ) -> list[Prediction]:
        """Read each entity's latest features from the online store and predict; with
        ``used``, append to it the values each answer's model call took (``{}`` for an
        answer without a prediction)."""
        store = self.store(runtime)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            online = store.get_online_features(features=self._service, entity_rows=rows).to_dict()
        names = self.contract.feature_names
        stored = self.contract.stored_feature_names
        answers: list[Prediction | None] = [None] * len(rows)
        ready: list[int] = []
        merged: list[dict[str, Any]] = []
        for i, row in enumerate(rows):
            values = {name: online.get(name, [None] * len(rows))[i] for name in names}
            values.update(row)
            unknown = bool(stored) and all(values.get(n) is None for n in stored)
            imputed: list[str] = []
            if unknown:
                if runtime.missing_entity == "error":
                    key = ", ".join(f"{k}={row[k]!r}" for k in self.contract.join_keys)
                    answers[i] = Prediction(
                        prediction=None,
                        model_tag=self.model_tag,
                        error=f"record {i}: {key} is not in the online store (never "
                        "materialized, or outside the feature TTL)",
                    )
                    continue
                # the model's own imputer fills them (training medians, a "missing" category)
                imputed = list(stored)
            merged.append(values)
            ready.append(i)
            answers[i] = Prediction(prediction=None, model_tag=self.model_tag, imputed=imputed)
        for i, pred in zip(ready, self.predict_rows(merged), strict=True):
            prev = answers[i]
            pred.imputed = prev.imputed if prev else []
            answers[i] = pred
        if used is not None:
            by_row = dict(zip(ready, merged, strict=True))
            used.extend(by_row.get(i, {}) for i in range(len(rows)))
        return [a for a in answers if a is not None]

    # -- the prediction log ------------------------------------------------------------
    def score_of(self, pred: Prediction) -> float | None:
        """One number per prediction for drift: p(positive class) (binary), the top
        class's probability (multiclass), the value (regression)."""
        if pred.prediction is None:
            return None
        if self.task == "regression":
            return float(pred.prediction)
        probs = pred.probabilities or {}
        if self.task == "binary" and self.classes:
            return probs.get(self.classes[-1])
        return max(probs.values()) if probs else None

    def records(
        self,
        endpoint: str,
        rows: list[dict[str, Any]],
        used: list[dict[str, Any]],
        out: list[Prediction],
        elapsed: float,
        model_tag: str | None = None,
    ) -> Deferred:
        """The log's records for one answered batch (``rows`` as sent, ``used`` the
        values the model took, aligned with ``out``), under ``model_tag`` (default: this
        model's). The request path only keeps references: the log's writer thread makes
        the records (nothing changes these lists and answers once they are answered)."""
        make = functools.partial(
            self._records, endpoint, rows, used, out, elapsed, model_tag, time.time()
        )
        return Deferred(make, len(out))

    def _records(
        self,
        endpoint: str,
        rows: list[dict[str, Any]],
        used: list[dict[str, Any]],
        out: list[Prediction],
        elapsed: float,
        model_tag: str | None,
        answered: float,
    ) -> list[PredictionRecord]:
        ts = datetime.fromtimestamp(answered, UTC)
        tag = model_tag or self.model_tag
        keys = self.contract.join_keys if endpoint == "predict_entity" else []
        request = self.contract.request_names
        columns = self.columns
        recs = []
        for row, values, pred in zip(rows, used, out, strict=True):
            outcome = "error" if pred.error else ("imputed" if pred.imputed else "ok")
            recs.append(
                PredictionRecord(
                    request_id=pred.request_id or "",
                    ts=ts,
                    model_tag=tag,
                    endpoint=endpoint,
                    entity={k: row.get(k) for k in keys},
                    inputs={c: _finite(values.get(c)) for c in columns} if values else {},
                    request={n: row.get(n) for n in request},
                    prediction=pred.prediction,
                    probabilities=pred.probabilities,
                    score=self.score_of(pred),
                    imputed=list(pred.imputed),
                    outcome=outcome,
                    latency_s=elapsed,
                )
            )
        return recs

    def label_error(self, label: Any) -> tuple[Any, str | None]:
        """(the label as stored, None) or (None, why it does not fit this model's task)."""
        if label is None:
            return None, "label is null"
        if self.task == "regression":
            if isinstance(label, bool) or not isinstance(label, int | float):
                return None, f"label {label!r} is not a number (the model is a regression)"
            if not math.isfinite(float(label)):
                return None, f"label {label!r} is not a finite number"
            return float(label), None
        text = str(label)
        if text in self.classes:
            return _label(self.model.classes_[self.classes.index(text)]), None
        return None, (
            f"label {label!r} is not one of the model's classes ({', '.join(self.classes)})"
        )


def _contract_of(meta: dict[str, Any]) -> FeatureContract:
    """The contract stored with the model (older models kept the key's kind beside it)."""
    return FeatureContract.from_dict(
        {"entity_kind": meta.get("entity_kind", "int"), **meta["contract"]}
    )


def _finite(v: Any) -> Any:
    """NaN as null: the log's JSON holds no NaN (a missing value is null)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        v = v.item()
        return None if isinstance(v, float) and not math.isfinite(v) else v
    return v


class _Feedback:
    """Labels in: checked against the model's task and the prediction log, then stored
    through a sink of their own (the writer thread keeps its own connection)."""

    def __init__(
        self, predictor: Predictor, monitoring: MonitoringSettings, plog: PredictionLog | None
    ) -> None:
        self.predictor = predictor
        self.monitoring = monitoring
        self.plog = plog
        self._sink: Sink | None = None
        self._lock = threading.Lock()

    def sink(self) -> Sink:
        if self._sink is None:
            self._sink = make_sink(self.monitoring)
        return self._sink

    def store(self, records: list[FeedbackIn]) -> FeedbackAnswer:
        errors: list[FeedbackError] = []
        valid: dict[str, tuple[int, Any, datetime | None]] = {}
        for i, rec in enumerate(records):
            label, why = self.predictor.label_error(rec.label)
            if why is not None:
                errors.append(FeedbackError(record=i, request_id=rec.request_id, error=why))
            else:
                valid[rec.request_id] = (i, label, rec.observed_at)  # a repeat: the last wins
        if not valid:
            return FeedbackAnswer(stored=0, errors=errors)
        if self.plog is not None:
            # this worker's queued predictions first, so a label right after its answer
            # finds it (other workers write theirs within monitoring.flush_seconds)
            self.plog.flush(timeout=5.0)
        now = datetime.now(UTC)
        try:
            with self._lock:
                sink = self.sink()
                known = sink.known(valid)
                rows = [
                    FeedbackRecord(rid, label, (seen or now).astimezone(UTC), now)
                    for rid, (_, label, seen) in valid.items()
                    if rid in known
                ]
                sink.write_feedback(rows)
        except SinkError as exc:
            # BentoML hides a 5xx's message: each record says why instead (and to retry)
            log.warning("feedback: %s", exc)
            for rid, (i, _, _) in valid.items():
                why = f"not stored: {exc}; retry later"
                errors.append(FeedbackError(record=i, request_id=rid, error=why))
            errors.sort(key=lambda e: e.record)
            return FeedbackAnswer(stored=0, errors=errors)
        for rid, (i, _, _) in valid.items():
            if rid not in known:
                errors.append(
                    FeedbackError(
                        record=i,
                        request_id=rid,
                        error=f"request id {rid!r} is not in the prediction log (unknown, "
                        "or not written yet: retry after a second)",
                    )
                )
        errors.sort(key=lambda e: e.record)
        return FeedbackAnswer(stored=len(rows), errors=errors)


def _num(v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, bool):
        return float(v)
    return float(v)


def _label(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


class _Router:
    """The champion's side of a shadow or canary rollout (see crispops.serving.router):
    which records the challenger answers or mirrors, its calls, and what is logged and
    counted for it. Mode ``off`` (no settings file) costs a clock read per request."""

    def __init__(
        self, predictor: Predictor, plog: PredictionLog | None, metrics: dict[str, Any]
    ) -> None:
        self.predictor = predictor
        self.plog = plog
        self.metrics = metrics
        self.routes = ConfigFile(config_path())
        self._challenger: Challenger | None = None
        # the server's event loop (BentoML makes the service on it), for the challenger
        self.loop = running_loop()
        self.learned_tag: str | None = None  # the challenger's model tag, from its answers
        self._seen: Any = None
        self._quiet_until = 0.0

    def challenger(self) -> Challenger:
        if self._challenger is None:  # on the server's loop: a call switches no thread
            self._challenger = Challenger(self.loop)
        return self._challenger

    def tag(self, cfg: Any) -> str:
        """The challenger's model tag for its error records: from its answers once it
        has answered, else from the settings."""
        return self.learned_tag or cfg.model_tag(self.predictor.model_tag) or "challenger"

    def canary_on(self) -> bool:
        """Whether a canary sends the challenger any records now (weight above 0)."""
        return self.canary_weight() > 0

    def canary_weight(self) -> float:
        """The canary's weight now (0 outside a canary)."""
        cfg = self.routes.current()
        return cfg.weight if cfg.mode == "canary" and cfg.active else 0.0

    def plan(
        self, endpoint: str, rows: list[dict[str, Any]], ids: list[str], canary: bool = True
    ) -> Any:
        """(settings, indices of the records the challenger gets), or None: all champion.
        With ``canary`` False a canary is not this caller's to route (None)."""
        cfg = self._current()
        if not cfg.active or (not canary and cfg.mode == "canary"):
            return None
        if cfg.weight >= 100:  # every record (a bucket is below 100): no hash needed
            return (cfg, list(range(len(rows)))) if rows else None
        keys = self.predictor.contract.join_keys if endpoint == "predict_entity" else []
        chosen = [
            i
            for i, (row, rid) in enumerate(zip(rows, ids, strict=True))
            if bucket({k: row.get(k) for k in keys if row.get(k) is not None}, rid) < cfg.weight
        ]
        return (cfg, chosen) if chosen else None

    def split(self, given: list[str | None]) -> Any:
        """The canary front's plan for /predict records, from their ids alone (see
        crispops.serving.router.split): (settings, the challenger's indices), or None."""
        cfg = self._current()
        if not (cfg.mode == "canary" and cfg.active and cfg.weight > 0):
            return None
        chosen = split(given, cfg.weight)
        return (cfg, chosen) if chosen else None

    def _current(self) -> Any:
        cfg = self.routes.current()
        if cfg is not self._seen:  # new settings (perhaps another challenger): learn again
            self._seen, self.learned_tag = cfg, None
        return cfg

    async def send(
        self, endpoint: str, cfg: Any, rows: list[dict[str, Any]], ids: list[str], chosen: list[int]
    ) -> list[dict[str, Any]]:
        """Canary: the chosen records' answers from the challenger (ChallengerError)."""
        body = with_ids(rows, ids, chosen)
        return await self.challenger().ask(f"{cfg.challenger_url}/{endpoint}", body, cfg.timeout_s)

    def mirror(
        self, endpoint: str, cfg: Any, rows: list[dict[str, Any]], ids: list[str], chosen: list[int]
    ) -> None:
        """Shadow: the challenger scores the chosen records off the request path (it logs
        them itself); a failure is logged here as its error records."""
        body = with_ids(rows, ids, chosen)
        started = time.perf_counter()

        def done(answers: list[dict[str, Any]] | None, exc: Exception | None) -> None:
            if answers is not None:
                self.learn(answers)
                return
            self.failed(endpoint, cfg, rows, ids, chosen, exc, time.perf_counter() - started)

        url = f"{cfg.challenger_url}/{endpoint}"
        if not self.challenger().mirror(url, body, cfg.timeout_s, done):
            self.metrics["shadow_dropped"].inc(len(chosen))

    def learn(self, answers: list[dict[str, Any]]) -> None:
        for a in answers:
            if isinstance(a, dict) and a.get("model_tag"):
                self.learned_tag = str(a["model_tag"])
                return

    def accept(self, answers: list[dict[str, Any]]) -> list[Prediction]:
        """The challenger's answers, parsed (ChallengerError when they do not)."""
        try:
            preds = [Prediction.model_validate(a) for a in answers]
        except ValueError as exc:
            raise ChallengerError(f"the challenger's answer does not parse ({exc})") from None
        self.learn(answers)
        return preds

    def receive(
        self, answers: list[dict[str, Any]], out: list[Prediction], chosen: list[int]
    ) -> str:
        """The challenger's answers in place of the champion's; its model tag."""
        preds = self.accept(answers)
        for i, pred in zip(chosen, preds, strict=True):
            out[i] = pred
        return preds[0].model_tag if preds else self.learned_tag or ""

    def failed(
        self,
        endpoint: str,
        cfg: Any,
        rows: list[dict[str, Any]],
        ids: list[str],
        chosen: list[int],
        exc: BaseException | None,
        elapsed: float,
    ) -> None:
        """A challenger call that failed: counted, and logged as the challenger's error
        records (so the rollout's analysis sees its error rate)."""
        why = str(exc) if exc else "no answer"
        tag = self.tag(cfg)
        self.metrics["challenger_errors"].labels(mode=cfg.mode, endpoint=endpoint).inc(len(chosen))
        self.metrics["predictions"].labels(endpoint=endpoint, outcome="error", model_tag=tag).inc(
            len(chosen)
        )
        now = time.monotonic()
        if now >= self._quiet_until:  # one line per 30 s, not one per batch
            self._quiet_until = now + 30.0
            log.warning("challenger %s (%s, %d records): %s", tag, cfg.mode, len(chosen), why)
        if self.plog is None:
            return
        errs = [
            Prediction(
                prediction=None, model_tag=tag, error=f"challenger: {why}", request_id=ids[i]
            )
            for i in chosen
        ]
        picked = [rows[i] for i in chosen]
        used: list[dict[str, Any]] = [{} for _ in chosen]
        self.plog.submit(
            self.predictor.records(endpoint, picked, used, errs, elapsed, model_tag=tag)
        )

    async def aclose(self) -> None:
        """On the server's loop (a shutdown hook): the mirrors in flight, then the client."""
        if self._challenger is None:
            return
        if self._challenger.loop is asyncio.get_running_loop():
            await self._challenger.aclose()
        else:  # made before the server's loop was known: it has a thread of its own
            await asyncio.to_thread(self._challenger.close)


#: The worker's collector thresholds: a young collection every 20,000 allocations (not
#: 700), an older one every 50 of those, a full one considered every 100 of those.
GC_THRESHOLDS = (20_000, 50, 100)


def tune_gc() -> None:
    """Freeze what the worker has loaded (the model, scikit-learn, pandas, Feast,
    BentoML: some 320,000 objects) out of the collector's sweeps, and collect less
    often. With the defaults, under load, a young collection ran every few milliseconds
    and promoted what the requests in flight and the prediction log's queue held; full
    collections then walked the whole heap 25-45 times a minute, 180 ms each.
    Measured at 16 connections, log on, interleaved rounds on one machine: 483 against
    664 us of CPU per answer (4 rounds) and 617 against 712 (2 rounds), p99 16 against
    23 ms and 22 against 48; with the log off it changed nothing (536 against 535)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def make_service(model_tag: str, bento_tag: str | None = None) -> type:
    """Build the BentoML service class for one pinned model tag."""
    runtime = serving_runtime()
    monitoring = monitoring_runtime()
    # BentoML 1.4 and pydantic 2.14 warn on every request from inside BentoML; in a
    # server process that is noise on stderr and time on the hot path.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    bound_batch_wait(runtime.max_batch_wait_ms)
    meta = _metadata_of(model_tag)
    contract = _contract_of(meta)
    Record = record_model(contract)
    EntityRecord = entity_model(contract)
    max_batch = runtime.max_batch_size

    Records = Annotated[
        list[Record],  # type: ignore[valid-type]
        Field(min_length=1, max_length=max_batch, description="Records to score"),
    ]
    EntityRecords = Annotated[
        list[EntityRecord],  # type: ignore[valid-type]
        Field(min_length=1, max_length=max_batch, description="Entities to score"),
    ]
    FeedbackRecords = Annotated[
        list[FeedbackIn],
        Field(min_length=1, max_length=max_batch, description="Labels for logged predictions"),
    ]

    predictions = bentoml.metrics.Counter(
        name="crispops_predictions",
        documentation="Predictions served, by endpoint, outcome and the model that answered",
        labelnames=["endpoint", "outcome", "model_tag"],
    )
    latency = bentoml.metrics.Histogram(
        name="crispops_predict_seconds",
        documentation="Time spent predicting, by endpoint and the model that answered",
        labelnames=["endpoint", "model_tag"],
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    )
    log_dropped = bentoml.metrics.Counter(
        name="crispops_prediction_log_dropped",
        documentation="Prediction log records dropped (queue full or sink failing)",
    )
    log_written = bentoml.metrics.Counter(
        name="crispops_prediction_log_written",
        documentation="Prediction log records written to the sink",
    )
    challenger_errors = bentoml.metrics.Counter(
        name="crispops_challenger_errors",
        documentation="Records whose challenger call failed (canary: the champion answered)",
        labelnames=["mode", "endpoint"],
    )
    shadow_dropped = bentoml.metrics.Counter(
        name="crispops_shadow_dropped",
        documentation="Records not mirrored to the challenger (too many waiting already)",
    )
    labels_stored = bentoml.metrics.Counter(
        name="crispops_feedback_labels",
        documentation="Labels received by /feedback, by outcome (stored or rejected)",
        labelnames=["outcome"],
    )

    live = Live()  # the worker's service instance, once BentoML has made it

    @bentoml.service(
        name="crispops_model",
        workers=runtime.workers,
        # concurrency is limited by _LoadShedder (503 + Retry-After), not BentoML's 429s
        traffic={"timeout": runtime.timeout_s},
        logging={"access": {"enabled": runtime.access_log}},
        # Spans cost a fifth of the CPU per request; trace the prediction endpoints only
        # when asked (serving.tracing), never the probes and metrics.
        tracing={"excluded_urls": _untraced(runtime.tracing)},
        envs=[{"name": "OMP_NUM_THREADS", "value": "1"}],
    )
    class CrispopsModel:
        """Scores records with the champion; looks features up in Feast by entity key."""

        model_ref = bentoml.models.BentoModel(model_tag)

        def __init__(self) -> None:
            install_log_filter()
            self.predictor = Predictor(Path(self.model_ref.path), meta, model_tag)
            self.runtime = runtime
            if runtime.feature_repo is not None:
                self.predictor.store(runtime)  # connect now, not on the first request
            self.plog = (
                PredictionLog.from_settings(monitoring, log_dropped, log_written)
                if monitoring.log_predictions
                else None
            )
            self.labels = _Feedback(self.predictor, monitoring, self.plog)
            self.router = _Router(
                self.predictor,
                self.plog,
                {
                    "predictions": predictions,
                    "challenger_errors": challenger_errors,
                    "shadow_dropped": shadow_dropped,
                },
            )
            live.model = self  # for CanaryFront, in front of this worker's batcher
            tune_gc()  # last: what the worker loaded stays out of the collector's sweeps

        @bentoml.on_shutdown
        async def flush_prediction_log(self) -> None:
            """A graceful stop (SIGTERM) writes what is queued before the worker exits."""
            await self.router.aclose()  # the mirrors in flight first: their errors are logged
            if self.plog is not None:
                self.plog.close()
                log.info("prediction log closed: %s", self.plog.stats())

        @bentoml.api(
            batchable=True,
            max_batch_size=max_batch,
            max_latency_ms=runtime.max_latency_ms,
        )
        def predict(self, records: Records) -> list[Prediction]:
            """Score records that carry every feature and request-time field."""
            started = time.perf_counter()
            rows = [r.model_dump() for r in records]  # type: ignore[attr-defined]
            # a canary's records were routed before the batcher (CanaryFront): a batch
            # never waits on the challenger's HTTP answer; here only shadow mirrors.
            # The front left these records to the champion as sent: a new id is drawn
            # from the champion's share of the hash, as the front's would have been.
            ids = request_ids(rows, self.router.canary_weight())
            plan = self.router.plan("predict", rows, ids, canary=False)
            out = _guarded(self.predictor.predict_rows, rows)
            elapsed = time.perf_counter() - started
            for p, rid in zip(out, ids, strict=True):
                p.request_id = rid
            if plan is None:  # the one-model path, as lean as before the router
                if self.plog is not None:
                    self.plog.submit(self.predictor.records("predict", rows, rows, out, elapsed))
                latency.labels(endpoint="predict", model_tag=model_tag).observe(elapsed)
                predictions.labels(endpoint="predict", outcome="ok", model_tag=model_tag).inc(
                    len(out)
                )
                return out
            return self.settle("predict", plan, rows, rows, ids, out, started, None, None)

        @bentoml.api
        async def predict_entity(self, records: EntityRecords) -> list[Prediction]:
            """Score entities: features come from the online store, on-demand ones included."""
            # Runs on the event loop (no thread hop: a third off the latency); yield once
            # first so requests waiting behind this one enter the load shedder's count.
            await asyncio.sleep(0)
            started = time.perf_counter()
            rows = [r.model_dump() for r in records]  # type: ignore[attr-defined]
            ids = request_ids(rows)
            plan = self.router.plan("predict_entity", rows, ids)
            pending = self.canary("predict_entity", plan, rows, ids)
            if pending is not None:  # the call written out before the lookup holds the loop
                await asyncio.sleep(0)
            used: list[dict[str, Any]] = []
            lookup = functools.partial(self.predictor.lookup, self.runtime, used=used)
            out = _guarded(lookup, rows)
            elapsed = time.perf_counter() - started
            for p, rid in zip(out, ids, strict=True):
                p.request_id = rid
            used = used[-len(rows) :]
            if plan is None:
                if self.plog is not None:
                    recs = self.predictor.records("predict_entity", rows, used, out, elapsed)
                    self.plog.submit(recs)
                latency.labels(endpoint="predict_entity", model_tag=model_tag).observe(elapsed)
                self.count("predict_entity", out)
                return out
            answers, exc = None, None
            if pending is not None:
                try:
                    answers = await asyncio.wait_for(pending, plan[0].timeout_s + 1.0)
                except Exception as e:  # whatever the challenger did, the champion answers
                    exc = e
            return self.settle("predict_entity", plan, rows, used, ids, out, started, answers, exc)

        def canary(
            self, endpoint: str, plan: Any, rows: list[dict[str, Any]], ids: list[str]
        ) -> Any:
            """Canary: the challenger's call starts before the champion scores (the two
            overlap); the champion's answers stay the fallback."""
            if plan is None or plan[0].mode != "canary":
                return None
            return asyncio.ensure_future(self.router.send(endpoint, plan[0], rows, ids, plan[1]))

        def settle(
            self,
            endpoint: str,
            plan: Any,
            rows: list[dict[str, Any]],
            used: list[dict[str, Any]],
            ids: list[str],
            out: list[Prediction],
            started: float,
            answers: list[dict[str, Any]] | None,
            exc: BaseException | None,
        ) -> list[Prediction]:
            """A routed batch: the challenger's answers in (canary) or the records
            mirrored to it (shadow); the champion's own answers logged and counted."""
            cfg, chosen = plan
            elapsed = time.perf_counter() - started
            mine = list(range(len(out)))
            if cfg.mode == "shadow":
                self.router.mirror(endpoint, cfg, rows, ids, chosen)
            else:
                if exc is None and answers is not None:
                    try:
                        tag = self.router.receive(answers, out, chosen)
                        mine = unrouted(out, chosen)
                        self.answered(endpoint, tag, [out[i] for i in chosen], elapsed)
                    except ChallengerError as e:
                        exc = e
                if exc is not None:  # the champion's answers stand in
                    self.router.failed(endpoint, cfg, rows, ids, chosen, exc, elapsed)
            if self.plog is not None and mine:
                self.plog.submit(
                    self.predictor.records(
                        endpoint,
                        [rows[i] for i in mine],
                        [used[i] for i in mine],
                        [out[i] for i in mine],
                        elapsed,
                    )
                )
            if mine:
                latency.labels(endpoint=endpoint, model_tag=model_tag).observe(elapsed)
                self.count(endpoint, [out[i] for i in mine])
            return out

        def answered(
            self, endpoint: str, tag: str, preds: list[Prediction], elapsed: float
        ) -> None:
            """The challenger's answers (canary), timed and counted under its tag."""
            latency.labels(endpoint=endpoint, model_tag=tag).observe(elapsed)
            self.count(endpoint, preds)

        def count(self, endpoint: str, out: list[Prediction]) -> None:
            # one increment per (outcome, model) of the batch, not one per record: each
            # is a lock and a write to BentoML's multiprocess metrics file
            tally: dict[tuple[str, str], int] = {}
            for p in out:
                outcome = "error" if p.error else ("imputed" if p.imputed else "ok")
                tally[outcome, p.model_tag] = tally.get((outcome, p.model_tag), 0) + 1
                if p.error and endpoint == "predict_entity":
                    log.warning("predict_entity: %s", p.error)
            for (outcome, tag), n in tally.items():
                predictions.labels(endpoint=endpoint, outcome=outcome, model_tag=tag).inc(n)

        @bentoml.api
        def feedback(self, records: FeedbackRecords) -> FeedbackAnswer:
            """Labels for logged predictions, by request id: stored beside the log.
            Per-record errors for unknown ids or labels that do not fit the model; a
            repeat stores the same label again (the last received wins)."""
            answer = self.labels.store(list(records))
            labels_stored.labels(outcome="stored").inc(answer.stored)
            if answer.errors:
                labels_stored.labels(outcome="rejected").inc(len(answer.errors))
            return answer

    service = bentoml.asgi_app(_metadata_app(model_tag, bento_tag, meta, contract))(CrispopsModel)
    shed = bentoml.metrics.Counter(
        name="crispops_shed_requests", documentation="Requests answered 503 to shed load"
    )
    service.add_asgi_middleware(_LoadShedder, limit=runtime.max_concurrency, shed=shed)
    service.add_asgi_middleware(CanaryFront, live=live, request=service.apis["predict"].input_spec)
    # BentoML derives a list response's media type from its JSON schema, rebuilt on every
    # request (a third of the CPU time under load); the answer is always JSON.
    for api in service.apis.values():
        api.output_spec.media_type = "application/json"
    return service


class _LoadShedder:
    """Above ``limit`` requests in flight in this worker, answer 503 with Retry-After at
    once instead of queueing: the server stays responsive and recovers when load drops.
    Probes and metrics are never shed."""

    EXEMPT = ("/livez", "/readyz", "/metrics", "/metadata")

    def __init__(self, app: Any, limit: int, shed: Any) -> None:
        self.app = app
        self.limit = limit
        self.shed = shed  # a counter, made with the service: prometheus_client is imported
        self.in_flight = 0  # only once BentoML has set PROMETHEUS_MULTIPROC_DIR

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path", "") in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.shed.inc()
            body = (
                f'{{"error": "overloaded: {self.in_flight} requests in flight; retry after 1 s"}}'
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"retry-after", b"1"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def _untraced(tracing: bool) -> list[str]:
    quiet = ["/livez", "/readyz", "/metrics", "/metadata"]
    return quiet if tracing else [*quiet, "/predict", "/predict_entity", "/feedback"]


def _guarded(fn: Any, rows: list[dict[str, Any]]) -> list[Prediction]:
    """Values the model cannot take answer 400 naming the record, never a 500."""
    from bentoml.exceptions import InvalidArgument

    try:
        return fn(rows)
    except (ValueError, TypeError) as exc:
        bad = _first_bad_record(fn, rows)
        raise InvalidArgument(f"{bad}: {exc}" if bad else str(exc)) from None


def _first_bad_record(fn: Any, rows: list[dict[str, Any]]) -> str | None:
    for i, row in enumerate(rows):
        try:
            fn([row])
        except (ValueError, TypeError):
            return f"record {i}"
    return None


def _metadata_app(
    model_tag: str, bento_tag: str | None, meta: dict[str, Any], contract: FeatureContract
) -> Any:
    """GET /metadata, mounted beside BentoML's own routes."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    body = _metadata_response(model_tag, bento_tag, meta, contract).model_dump()

    async def metadata(request: Request) -> JSONResponse:
        return JSONResponse(body)

    return Starlette(routes=[Route("/metadata", metadata, methods=["GET"])])


def _metadata_response(
    model_tag: str, bento_tag: str | None, meta: dict[str, Any], contract: FeatureContract
) -> Metadata:
    return Metadata(
        model_tag=model_tag,
        bento_tag=bento_tag,
        task=meta["task"],
        metrics={k: float(v) for k, v in meta.get("metrics", {}).items()},
        feature_service=contract.feature_service,
        features=contract.feature_names,
        request_fields=contract.request_names,
        model_inputs=list(meta["numeric"]) + list(meta["categorical"]),
        training_window=dict(meta.get("training_window", {})),
    )
