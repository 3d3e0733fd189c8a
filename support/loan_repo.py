"""A team's own Feast repo and label table, generated: modelled on Feast's public
credit-score tutorial (feast-dev/feast-credit-score-local-tutorial).

What a platform team brings, rather than our demo's shape:

- two entities with different key types: ``zipcode`` (int) and ``dob_ssn`` (string);
- ``zipcode_features``: a string column ``city`` with thousands of distinct values,
  a constant column ``location_type``, and numbers (population, wages, returns);
- ``credit_history``: a view with a 90-day TTL whose rows cover only a small share of
  the label rows' people inside that TTL;
- an on-demand view that uses a request field (``loan_amnt``);
- a label table ``loan_table.parquet`` with an ID column (``loan_id``), a second
  datetime column (``created_timestamp``) and the application's own fields (age,
  income, home ownership, employment, intent, amount, interest rate), which carry
  most of the signal;
- relative paths in the definitions and in ``feature_store.yaml``, as Feast's
  templates write them.

The repo is the team's: crispops reads it and never writes into it (the stores it
names live under its ``data/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

FEATURE_SERVICE = "credit_scoring_v1"
LABELS = "loan_table.parquet"
ENTITY_KEYS = ("zipcode", "dob_ssn")
HIGH_CARDINALITY = "city"
CONSTANT = "location_type"
ID_COLUMN = "loan_id"
SPARSE_VIEW = "credit_history"
APPLICATION_FIELDS = (
    "person_age",
    "person_income",
    "person_home_ownership",
    "person_emp_length",
    "loan_intent",
    "loan_amnt",
    "loan_int_rate",
)

FEATURES_PY = '''\
"""Credit scoring features (after Feast's credit-score tutorial)."""

from datetime import timedelta
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

zipcode = Entity(name="zipcode", join_keys=["zipcode"], value_type=ValueType.INT64)
dob_ssn = Entity(
    name="dob_ssn",
    join_keys=["dob_ssn"],
    value_type=ValueType.STRING,
    description="Date of birth and last four digits of social security number",
)

zipcode_source = FileSource(
    name="zipcode_source",
    path="data/zipcode_table.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
)
credit_history_source = FileSource(
    name="credit_history_source",
    path="data/credit_history.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
)
loan_request = RequestSource(
    name="loan_request", schema=[Field(name="loan_amnt", dtype=Int64)]
)

zipcode_features = FeatureView(
    name="zipcode_features",
    entities=[zipcode],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="city", dtype=String),
        Field(name="state", dtype=String),
        Field(name="location_type", dtype=String),
        Field(name="tax_returns_filed", dtype=Int64),
        Field(name="population", dtype=Int64),
        Field(name="total_wages", dtype=Int64),
    ],
    source=zipcode_source,
)

credit_history = FeatureView(
    name="credit_history",
    entities=[dob_ssn],
    ttl=timedelta(days=90),
    schema=[
        Field(name="credit_card_due", dtype=Int64),
        Field(name="mortgage_due", dtype=Int64),
        Field(name="student_loan_due", dtype=Int64),
        Field(name="vehicle_loan_due", dtype=Int64),
        Field(name="hard_pulls", dtype=Int64),
        Field(name="missed_payments_2y", dtype=Int64),
        Field(name="missed_payments_1y", dtype=Int64),
        Field(name="missed_payments_6m", dtype=Int64),
        Field(name="bankruptcies", dtype=Int64),
    ],
    source=credit_history_source,
)


@on_demand_feature_view(
    sources=[zipcode_features, loan_request],
    schema=[Field(name="loan_to_mean_wage", dtype=Float64)],
    mode="python",
)
def loan_to_wage(inputs: dict[str, Any]) -> dict[str, Any]:
    out = []
    for amount, wages, returns in zip(
        inputs["loan_amnt"], inputs["total_wages"], inputs["tax_returns_filed"], strict=True
    ):
        ok = amount is not None and wages and returns
        out.append(float(amount) / (wages / returns) if ok else None)
    return {"loan_to_mean_wage": out}


credit_scoring_v1 = FeatureService(
    name="credit_scoring_v1",
    features=[zipcode_features, credit_history, loan_to_wage],
)
'''

FEATURE_STORE_YAML = """\
project: credit_scoring_local
registry: data/registry.db
provider: local
online_store:
  type: sqlite
  path: data/online_store.db
offline_store:
  type: {offline_store}
entity_key_serialization_version: 3
"""


@dataclass(frozen=True)
class LoanRepo:
    repo: Path
    labels: Path
    rows: int
    #: Share of label rows whose person has a credit_history row inside its TTL.
    credit_coverage: float


def _person_keys(rng: np.random.Generator, n: int) -> np.ndarray:
    born = pd.Timestamp("1950-01-01") + pd.to_timedelta(rng.integers(0, 18000, n), unit="D")
    ssn = rng.integers(0, 10_000, n)
    keys = np.array([f"{b:%Y%m%d}_{s:04d}" for b, s in zip(born, ssn, strict=True)])
    return np.unique(keys)


def generate(
    dest: Path,
    *,
    rows: int = 3000,
    zipcodes: int = 6000,
    coverage: float = 0.15,
    seed: int = 3,
    offline_store: str = "duckdb",
    skew: float = 0.0,
    now: datetime | None = None,
) -> LoanRepo:
    """Write the repo (definitions, feature_store.yaml, data/) under ``dest``.

    ``skew`` 0 spreads the applications over every zipcode (as many cities as zipcodes
    appear); above 0 zipcodes are drawn with weights 1/rank**skew, as real applications
    come from a few big cities and a long tail of small ones."""
    rng = np.random.default_rng(seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    repo = dest / "feature_repo"
    data = repo / "data"
    data.mkdir(parents=True, exist_ok=True)
    (repo / "features.py").write_text(FEATURES_PY)
    (repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML.format(offline_store=offline_store))
    (repo / ".feastignore").write_text("data/\n")

    # zipcode_features: one snapshot per zipcode, long before any loan
    zips = np.arange(10_000, 10_000 + zipcodes)
    cities = np.array([f"city_{i:05d}" for i in rng.permutation(zipcodes)])
    states = np.array([f"S{i:02d}" for i in rng.integers(0, 50, zipcodes)])
    population = rng.integers(500, 90_000, zipcodes)
    returns = np.maximum(1, (population * rng.uniform(0.3, 0.5, zipcodes)).astype(int))
    mean_wage = rng.lognormal(10.6, 0.35, zipcodes)
    snapshot = pd.Timestamp(now - timedelta(days=900))
    zip_table = pd.DataFrame(
        {
            "zipcode": zips.astype("int64"),
            "city": cities,
            "state": states,
            "location_type": "PRIMARY",
            "tax_returns_filed": returns.astype("int64"),
            "population": population.astype("int64"),
            "total_wages": (returns * mean_wage).astype("int64"),
            "event_timestamp": snapshot,
            "created_timestamp": snapshot,
        }
    )

    # the label table: one application per row, people may apply more than once
    people = _person_keys(rng, max(rows, 10))
    who = rng.choice(people, rows)
    start = now - timedelta(days=365)
    seconds = np.sort(rng.uniform(0, 364 * 86400, rows))
    applied = pd.to_datetime([start + timedelta(seconds=float(s)) for s in seconds], utc=True)
    age = rng.integers(20, 70, rows)
    income = np.round(rng.lognormal(10.9, 0.5, rows), -2)
    emp = np.round(np.clip(rng.gamma(2.0, 3.0, rows), 0, 40), 1)
    emp[rng.random(rows) < 0.03] = np.nan
    home = rng.choice(["RENT", "MORTGAGE", "OWN", "OTHER"], rows, p=[0.5, 0.35, 0.12, 0.03])
    intent = rng.choice(
        ["EDUCATION", "MEDICAL", "VENTURE", "PERSONAL", "HOMEIMPROVEMENT", "DEBTCONSOLIDATION"],
        rows,
    )
    amount = np.round(np.clip(rng.lognormal(9.0, 0.6, rows), 500, 35_000), -2).astype("int64")
    rate = np.round(np.clip(rng.normal(11.0, 3.2, rows), 5.0, 23.0), 2)
    if skew > 0:
        weights = 1.0 / np.arange(1, zipcodes + 1) ** skew
        zip_of = rng.choice(zips, rows, p=weights / weights.sum())
    else:
        zip_of = rng.permutation(np.resize(zips, rows))  # every zipcode applies: many cities

    # credit history: monthly rows (so one is inside the 90-day TTL of every application)
    # for a small share of the people applying; one old row for everyone else
    covered = set(rng.choice(people, int(len(people) * coverage), replace=False))
    keys: list[str] = []
    times: list[pd.Timestamp] = []
    for person in people:
        if person in covered:
            stamps = [now - timedelta(days=400 - 30 * k) for k in range(14)]
        else:
            stamps = [now - timedelta(days=int(rng.integers(800, 1200)))]
        keys += [person] * len(stamps)
        times += [pd.Timestamp(s) for s in stamps]
    n_hist = len(keys)
    history = pd.DataFrame(
        {
            "dob_ssn": keys,
            "credit_card_due": rng.integers(0, 9000, n_hist).astype("int64"),
            "mortgage_due": rng.integers(0, 400_000, n_hist).astype("int64"),
            "student_loan_due": rng.integers(0, 60_000, n_hist).astype("int64"),
            "vehicle_loan_due": rng.integers(0, 30_000, n_hist).astype("int64"),
            "hard_pulls": rng.integers(0, 8, n_hist).astype("int64"),
            "missed_payments_2y": rng.integers(0, 6, n_hist).astype("int64"),
            "missed_payments_1y": rng.integers(0, 4, n_hist).astype("int64"),
            "missed_payments_6m": rng.integers(0, 3, n_hist).astype("int64"),
            "bankruptcies": rng.integers(0, 2, n_hist).astype("int64"),
            "event_timestamp": times,
            "created_timestamp": times,
        }
    )

    # the outcome: mostly the application's own fields, a little credit history
    latest = history.sort_values("event_timestamp").groupby("dob_ssn")["missed_payments_1y"]
    missed_of = pd.Series(who).map(latest.last()).where(pd.Series(who).isin(covered), 0)
    logit = (
        -1.2
        + 0.35 * (rate - 11.0)
        + 8.0 * (amount / income - 0.15)
        + 0.6 * (home == "RENT")
        - 0.4 * (home == "MORTGAGE")
        - 0.7 * (home == "OWN")
        - 0.06 * np.nan_to_num(emp, nan=2.0)
        + 0.4 * (intent == "MEDICAL")
        - 0.3 * (intent == "VENTURE")
        - 0.01 * (age - 40)
        + 0.15 * missed_of.to_numpy(dtype=float)
    )
    status = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    labels = pd.DataFrame(
        {
            "loan_id": np.arange(1, rows + 1).astype("int64") * 7 + 100_000,
            "dob_ssn": who,
            "zipcode": zip_of.astype("int64"),
            "person_age": age.astype("int64"),
            "person_income": income,
            "person_home_ownership": home,
            "person_emp_length": emp,
            "loan_intent": intent,
            "loan_amnt": amount,
            "loan_int_rate": rate,
            "loan_status": status,
            "event_timestamp": applied,
            "created_timestamp": applied + pd.Timedelta(seconds=5),
        }
    )
    for frame, name in ((zip_table, "zipcode_table.parquet"), (history, "credit_history.parquet")):
        for col in ("event_timestamp", "created_timestamp"):
            frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]")
        frame.to_parquet(data / name, index=False)
    for col in ("event_timestamp", "created_timestamp"):
        labels[col] = labels[col].astype("datetime64[us, UTC]")
    labels_path = data / LABELS
    labels.to_parquet(labels_path, index=False)
    share = float(pd.Series(who).isin(covered).mean())
    return LoanRepo(repo=repo, labels=labels_path, rows=rows, credit_coverage=share)
