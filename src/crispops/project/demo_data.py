"""A seeded, realistic credit-default data set for the bundled demo.

Three Parquet files, as a lender's warehouse would hold them:

- ``customer_profiles.parquet``: monthly profile snapshots per customer
  (income, credit score, employment, home ownership, age, open credit lines);
- ``account_activity.parquet``: daily account aggregates (balance, utilization,
  transactions, late payments over 90 days), with days of no activity missing;
- ``loan_applications.parquet``: the label source: ``customer_id``,
  ``application_ts``, ``requested_amount``, ``term_months`` and ``defaulted``.

The default probability depends on the features *as of the application time*,
through thresholds and interactions a tree ensemble captures and a linear model
does not. A default then worsens the customer's later records (credit score
drops, late payments rise), so joining on the latest values leaks the label.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from crispops.errors import UserError
from crispops.io import atomic_write

PROFILES = "customer_profiles.parquet"
ACTIVITY = "account_activity.parquet"
APPLICATIONS = "loan_applications.parquet"

HOME_OWNERSHIP = np.array(["RENT", "MORTGAGE", "OWN"])

#: The default size: the whole demo (data, features, pipeline) in about a minute on 2 cores.
DEFAULT_CUSTOMERS = 2000


@dataclass(frozen=True)
class DemoDataResult:
    out_dir: Path
    customers: int
    profiles: int
    activity: int
    applications: int
    default_rate: float
    start: datetime
    end: datetime


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def default_end_date() -> datetime:
    """Today at midnight UTC, so the demo's recent data falls inside Feast TTLs."""
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def generate(
    out_dir: Path,
    customers: int = DEFAULT_CUSTOMERS,
    days: int = 365,
    seed: int = 7,
    end: datetime | None = None,
) -> DemoDataResult:
    """Generate the demo data set into ``out_dir`` and return what was written."""
    if customers < 20:
        raise UserError(f"customers: at least 20 needed, got {customers}")
    if days < 90:
        raise UserError(f"days: at least 90 needed, got {days}")
    rng = np.random.default_rng(seed)
    end = end or default_end_date()
    start = end - timedelta(days=days)
    out_dir.mkdir(parents=True, exist_ok=True)
    n, d = customers, days
    ids = np.arange(1001, 1001 + n)

    # Latent customer traits ------------------------------------------------------
    age0 = rng.integers(21, 70, n).astype(float)
    income0 = np.exp(rng.normal(np.log(52_000), 0.45, n)).round(-2)
    score0 = np.clip(rng.normal(680, 70, n), 350, 845)
    employ0 = np.clip(rng.gamma(2.0, 3.0, n), 0, 40)
    home = HOME_OWNERSHIP[rng.choice(3, n, p=[0.45, 0.38, 0.17])]
    lines0 = rng.poisson(4, n) + 1
    spend_rate = rng.uniform(0.1, 0.9, n)  # how hard a customer leans on credit

    # Daily activity trajectories (n x d) ------------------------------------------
    util = np.empty((n, d))
    u = np.clip(spend_rate + rng.normal(0, 0.1, n), 0, 1.2)
    for t in range(d):
        u = np.clip(u + rng.normal(0, 0.03, n) + 0.02 * (spend_rate - u), 0.0, 1.3)
        util[:, t] = u
    limit = income0 * rng.uniform(0.15, 0.35, n)
    balance = util * limit[:, None] * rng.lognormal(0, 0.05, (n, d))
    tx = rng.poisson((3 + 6 * spend_rate)[:, None] * np.ones((n, d)))
    late_events = rng.random((n, d)) < (0.002 + 0.01 * np.clip(util - 0.7, 0, None))
    present = rng.random((n, d)) > 0.1  # days with no activity record

    # Monthly profile snapshots ----------------------------------------------------
    months = d // 30 + 1
    score = np.empty((n, months))
    income = np.empty((n, months))
    s, inc = score0.copy(), income0.copy()
    for m in range(months):
        s = np.clip(s + rng.normal(0, 8, n) - 10 * (util[:, min(m * 30, d - 1)] > 0.9), 300, 850)
        inc = inc * np.exp(rng.normal(0.002, 0.02, n))
        score[:, m], income[:, m] = s, inc

    # Loan applications, processed in time order per customer -------------------
    n_apps = rng.poisson(4.5, n) + 1
    rows: list[tuple[int, float, float, int, int]] = []
    for c in range(n):
        times = np.sort(rng.uniform(35, d - 0.01, n_apps[c]))  # days since start
        for tday in times:
            day = int(tday)
            # the latest activity record at or before the application (Feast's as-of
            # rule): the record of day k closes at midnight, start + k + 1 days
            seen = np.flatnonzero(present[c, :day])
            a = seen[-1] if seen.size else max(day - 1, 0)
            m = min(day // 30, months - 1)
            late90 = late_events[c, max(0, a - 89) : a + 1].sum()
            amount = float(np.round(rng.lognormal(np.log(9_000), 0.7), -2))
            lti = amount / income[c, m]
            age = age0[c] + tday / 365.0
            # thresholds and interactions: easy for trees, hard for a linear model
            z = (
                -2.6
                + 1.5 * float(score[c, m] < 600)
                + 2.3 * float((util[c, a] > 0.85) and (late90 >= 1))
                + 1.8 * float((lti > 0.35) and (employ0[c] < 3.0))
                + 1.6 * float(age < 26 or age > 63)
                - 1.4 * float(home[c] == "OWN" and income[c, m] > 45_000)
                + 1.3 * float(tx[c, a] > 8) * float(0.5 < util[c, a] < 0.8)
                + rng.normal(0, 0.3)
            )
            defaulted = int(rng.random() < _sigmoid(z))
            term = int(rng.choice([12, 24, 36, 60]))
            rows.append((c, tday, amount, term, defaulted))
            if defaulted:
                # A default leaves marks on the customer's later records.
                util[c, day:] = np.clip(util[c, day:] + 0.25, 0, 1.3)
                late_events[c, day : day + 60 : 7] = True
                score[c, m + 1 :] = np.clip(score[c, m + 1 :] - 90, 300, 850)

    # Frames -----------------------------------------------------------------------
    ci, di = np.nonzero(present)
    created = pd.Timestamp(end)
    day_ts = pd.Timestamp(start) + pd.to_timedelta(di + 1, unit="D")  # aggregate closes at midnight
    late_cum = np.cumsum(late_events, axis=1)
    late90_all = late_cum - np.concatenate([np.zeros((n, 90)), late_cum[:, :-90]], axis=1)
    activity = pd.DataFrame(
        {
            "customer_id": ids[ci].astype("int64"),
            "event_timestamp": day_ts,
            "avg_balance": balance[ci, di].round(2),
            "credit_utilization": util[ci, di].round(4),
            "num_transactions": tx[ci, di].astype("int64"),
            "late_payments_90d": late90_all[ci, di].astype("int64"),
            "created": created,
        }
    )
    grid_c, grid_m = np.meshgrid(np.arange(n), np.arange(months), indexing="ij")
    pc, pm = grid_c.ravel(), grid_m.ravel()
    jitter = pd.to_timedelta(rng.integers(0, 6 * 3600, pc.size), unit="s")
    snap_ts = pd.Timestamp(start) + pd.to_timedelta(pm * 30, unit="D") + jitter
    profiles = pd.DataFrame(
        {
            "customer_id": ids[pc].astype("int64"),
            "event_timestamp": snap_ts,
            "annual_income": income[pc, pm].round(-1),
            "credit_score": score[pc, pm].round().astype("int64"),
            "employment_years": (employ0[pc] + pm / 12.0).round(1),
            "home_ownership": home[pc],
            "age": (age0[pc] + pm / 12.0).astype("int64"),
            "open_credit_lines": lines0[pc].astype("int64"),
            "created": created,
        }
    )
    profiles = profiles[profiles["event_timestamp"] <= pd.Timestamp(end)]
    apps = np.array(rows, dtype=object)
    app_ts = pd.Timestamp(start) + pd.to_timedelta(apps[:, 1].astype(float), unit="D")
    applications = pd.DataFrame(
        {
            "customer_id": ids[apps[:, 0].astype(int)].astype("int64"),
            "application_ts": app_ts.floor("s"),
            "requested_amount": apps[:, 2].astype(float),
            "term_months": apps[:, 3].astype("int64"),
            "defaulted": apps[:, 4].astype("int64"),
        }
    ).sort_values("application_ts", ignore_index=True)

    for name, frame in ((PROFILES, profiles), (ACTIVITY, activity), (APPLICATIONS, applications)):
        _write(out_dir / name, frame)
    return DemoDataResult(
        out_dir=out_dir,
        customers=n,
        profiles=len(profiles),
        activity=len(activity),
        applications=len(applications),
        default_rate=float(applications["defaulted"].mean()),
        start=start,
        end=end,
    )


def _write(path: Path, df: pd.DataFrame) -> None:
    """Parquet with microsecond timestamps: Spark 4 rejects nanoseconds (`crispops demo
    --engine spark` reads these files through Spark); DuckDB reads both."""
    atomic_write(path, lambda p: df.to_parquet(p, index=False, coerce_timestamps="us"))


@dataclass(frozen=True)
class WorldShift:
    """How the demo's world moves after training (``crispops demo-cycle``): loans grow
    (``amount_factor`` times the usual request), and what drives default moves with
    them: a loan large against the income now defaults whatever the employment."""

    amount_factor: float = 2.5
    lti_threshold: float = 0.45
    lti_effect: float = 2.2


def moved_applications(
    data_dir: Path,
    n: int,
    *,
    since: datetime,
    until: datetime,
    seed: int = 11,
    shift: WorldShift | None = None,
) -> pd.DataFrame:
    """``n`` new loan applications between ``since`` and ``until``, from customers of the
    demo data in ``data_dir``, drawn in the moved world and labelled by its rule.

    The features are each customer's latest records (what the online store holds after
    materialization), so the service sees the same values the labels were drawn from.
    Columns are those of ``loan_applications.parquet``.
    """
    shift = shift or WorldShift()
    if n < 1:
        raise UserError(f"requests: at least 1 needed, got {n}")
    paths = [data_dir / name for name in (PROFILES, ACTIVITY, APPLICATIONS)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(
            f"{data_dir}: not the demo's data (missing {', '.join(missing)}); "
            "the moved world is drawn from the bundled demo's tables"
        )
    rng = np.random.default_rng(seed)
    latest = (
        pd.read_parquet(paths[0])
        .sort_values("event_timestamp")
        .groupby("customer_id")
        .last()
        .join(
            pd.read_parquet(paths[1]).sort_values("event_timestamp").groupby("customer_id").last(),
            rsuffix="_a",
        )
    )
    picks = latest.iloc[rng.integers(0, len(latest), n)]
    amount = np.round(rng.lognormal(np.log(9_000 * shift.amount_factor), 0.7, n), -2)
    income = picks["annual_income"].to_numpy(float)
    util = picks["credit_utilization"].to_numpy(float)
    late = picks["late_payments_90d"].to_numpy(float)
    age = picks["age"].to_numpy(float)
    lti = amount / np.maximum(income, 1.0)
    z = (
        -2.6
        + 1.5 * (picks["credit_score"].to_numpy(float) < 600)
        + 2.3 * ((util > 0.85) & (late >= 1))
        + shift.lti_effect * (lti > shift.lti_threshold)
        + 1.6 * ((age < 26) | (age > 63))
        - 1.4 * ((picks["home_ownership"].to_numpy() == "OWN") & (income > 45_000))
        + rng.normal(0, 0.3, n)
    )
    span = max((until - since).total_seconds(), 1.0)
    ts = pd.Timestamp(since) + pd.to_timedelta(np.sort(rng.uniform(0, span, n)), unit="s")
    return pd.DataFrame(
        {
            "customer_id": picks.index.to_numpy().astype("int64"),
            "application_ts": ts.floor("s"),
            "requested_amount": amount.astype(float),
            "term_months": rng.choice([12, 24, 36, 60], n).astype("int64"),
            "defaulted": (rng.random(n) < _sigmoid(z)).astype("int64"),
        }
    )
