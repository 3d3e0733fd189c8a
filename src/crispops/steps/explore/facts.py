"""What the explore report states: the checked input, the label and the statistics.

Nothing here draws a figure or writes markup; ``plots`` and ``html`` read these facts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

__all__ = [
    "HIGH_CARDINALITY_MIN",
    "MAX_CATEGORIES_SHOWN",
    "MAX_CLASSES_SHOWN",
    "MISSING",
    "MI_SAMPLE_ROWS",
    "OTHER",
    "SEED",
    "Facts",
    "Kind",
    "Target",
    "Task",
    "as_category_text",
    "as_float",
    "as_utc",
    "bin_edges",
    "clip_range",
    "fixed",
    "fmt",
    "period",
    "top_categories",
    "validate",
]

Task = Literal["binary", "multiclass", "regression"]
Kind = Literal["numeric", "categorical"]

#: Mutual information is estimated on a random sample of at most this many rows.
MI_SAMPLE_ROWS = 20_000
#: Classes beyond this many (by frequency) are pooled as "(other)" in plots.
MAX_CLASSES_SHOWN = 8
#: Categories beyond this many (by frequency) are pooled as "(other)" in plots.
MAX_CATEGORIES_SHOWN = 12
#: A categorical with more distinct values than this, and than a tenth of the rows, is
#: flagged: its mutual information is inflated (every rare value looks predictive).
HIGH_CARDINALITY_MIN = 20
SEED = 0

OTHER = "(other)"
MISSING = "(missing)"


# ---------------------------------------------------------------------------
# Validation and typing of the input
# ---------------------------------------------------------------------------


def entity_keys(entity: str | Sequence[str]) -> list[str]:
    """One entity key column, or several (a composite entity)."""
    return [entity] if isinstance(entity, str) else list(entity)


def validate(
    df: pd.DataFrame,
    *,
    entity: str | Sequence[str],
    timestamp: str,
    label: str,
    task: str,
    features: Sequence[str],
) -> list[str]:
    if task not in ("binary", "multiclass", "regression"):
        raise ValueError(f"task must be 'binary', 'multiclass' or 'regression', got {task!r}")
    if isinstance(features, str):
        raise ValueError("features must be a sequence of column names, not a single string")
    feats = list(features)
    if not feats:
        raise ValueError("features must name at least one column")
    duplicated = sorted({f for f in feats if feats.count(f) > 1})
    if duplicated:
        raise ValueError(f"features lists column(s) more than once: {', '.join(duplicated)}")
    if label in feats:
        raise ValueError(f"label column {label!r} must not also be a feature")
    roles = [("entity", key) for key in entity_keys(entity)]
    roles += [("timestamp", timestamp), ("label", label)]
    roles += [("feature", f) for f in feats]
    absent = [f"{role} column {name!r}" for role, name in roles if name not in df.columns]
    if absent:
        raise ValueError(f"missing {'; '.join(absent)} in the data frame")
    if df.empty:
        raise ValueError(f"the data frame is empty: no rows to explore for label {label!r}")
    if df[label].notna().sum() == 0:
        raise ValueError(f"label column {label!r} has no non-null value")
    if task == "regression" and not _is_number(df[label]):
        raise ValueError(f"label column {label!r} must be numeric for regression")
    return feats


def _is_number(s: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s))


def _kind(s: pd.Series) -> Kind:
    return "numeric" if _is_number(s) else "categorical"


def as_utc(s: pd.Series, name: str) -> pd.Series:
    """The timestamp column as tz-naive UTC datetimes (naive input is taken as UTC)."""
    if not pd.api.types.is_datetime64_any_dtype(s):
        try:
            s = pd.to_datetime(s, utc=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"timestamp column {name!r} is not a datetime column") from exc
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    if s.notna().sum() == 0:
        raise ValueError(f"timestamp column {name!r} has no non-null value")
    return s


def as_float(s: pd.Series) -> np.ndarray:
    return np.asarray(s.astype("float64"), dtype=float)


def as_category_text(s: pd.Series) -> pd.Series:
    """Categorical values as strings, missing ones as ``(missing)``."""
    out = s.astype("object").where(s.notna(), None)
    return out.map(lambda v: MISSING if v is None else str(v))


def _natural_key(value: object) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts ``class_2`` before ``class_10``."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part.casefold())
        for part in re.split(r"(\d+)", str(value))
        if part
    )


def _sorted_values(values: Sequence[Any]) -> list[Any]:
    if all(isinstance(v, str) for v in values):
        return sorted(values, key=_natural_key)
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=_natural_key)


def _class_name(value: object) -> str:
    """Display name of a class; 1.0 (an int label upcast by NaN) reads as 1."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


@dataclass
class Target:
    """The label, prepared once for every section."""

    task: str
    name: str
    raw: pd.Series
    classes: list[str]  # display names of every class, in natural order (classification)
    shown: list[str]  # classes drawn in plots (the most frequent ones, plus "(other)")
    text: pd.Series  # display class per row; NaN where the label is missing (classification)
    numeric: pd.Series  # float per row: the value (regression) or positive indicator (binary)
    positive: str | None  # the class whose rate is plotted (binary)
    counts: dict[str, int]
    summary: dict[str, float]

    @classmethod
    def build(cls, y: pd.Series, task: str, name: str) -> Target:
        present = y.dropna()
        if task == "regression":
            values = present.astype("float64")
            summary = {
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "min": float(values.min()),
                "max": float(values.max()),
            }
            nums = y.astype("float64")
            empty = pd.Series(np.nan, index=y.index, dtype=object)
            return cls(task, name, y, [], [], empty, nums, None, {}, summary)

        natural = _sorted_values(list(pd.unique(present.astype("object"))))
        names = {v: _class_name(v) for v in natural}
        classes = list(dict.fromkeys(names[v] for v in natural))
        text = y.astype("object").map(lambda v: names[v] if pd.notna(v) else np.nan)
        counts_series = text.value_counts()
        counts = {c: int(counts_series.get(c, 0)) for c in classes}
        total = max(sum(counts.values()), 1)
        summary = {c: counts[c] / total for c in classes}

        by_freq = sorted(classes, key=lambda c: -counts[c])
        if len(classes) > MAX_CLASSES_SHOWN:
            kept = set(by_freq[: MAX_CLASSES_SHOWN - 1])
            shown = [c for c in classes if c in kept] + [OTHER]
            text = text.map(lambda c: c if pd.isna(c) or c in kept else OTHER)
        else:
            shown = list(classes)

        # the last class in natural order is "positive", as in scikit-learn's classes_[1]
        positive = classes[-1] if task == "binary" else None
        if positive is not None:
            hit = (text == positive).astype(float)
            nums = pd.Series(np.where(text.isna(), np.nan, hit), index=y.index)
        else:
            nums = pd.Series(np.nan, index=y.index, dtype=float)
        return cls(task, name, y, classes, shown, text, nums, positive, counts, summary)


@dataclass
class Facts:
    """Everything the report states about the data, computed once."""

    title: str
    n_rows: int
    n_entities: int
    entity: str
    timestamp: str
    label: str
    task: str
    features: list[str]
    kinds: dict[str, Kind]
    missing: dict[str, float]
    distinct: dict[str, int]
    constant: list[str]
    high_cardinality: list[str]
    ranked: list[str]
    mi: dict[str, float]
    rho: dict[str, float]
    t_min: pd.Timestamp
    t_max: pd.Timestamp
    target: Target

    @classmethod
    def build(
        cls,
        df: pd.DataFrame,
        ts: pd.Series,
        feats: list[str],
        *,
        title: str,
        entity: str | Sequence[str],
        timestamp: str,
        label: str,
        task: str,
    ) -> Facts:
        """Every fact the report states, from a validated frame and its UTC timestamps."""
        y = df[label]
        kinds: dict[str, Kind] = {f: _kind(df[f]) for f in feats}
        missing = {f: float(df[f].isna().mean()) for f in feats}
        distinct = {f: int(df[f].nunique(dropna=True)) for f in feats}
        constant = [f for f in feats if distinct[f] <= 1]
        many_values = max(HIGH_CARDINALITY_MIN, len(df) // 10)
        high_card = [f for f in feats if kinds[f] == "categorical" and distinct[f] > many_values]

        target = Target.build(y, task, label)
        mi = _mutual_information(df, feats, kinds, target)
        ranked = sorted(feats, key=lambda f: (-mi[f], feats.index(f)))
        rho = {f: _spearman(df[f], target.numeric) for f in feats if kinds[f] == "numeric"}

        return cls(
            title=title,
            n_rows=len(df),
            n_entities=len(df[entity_keys(entity)].dropna().drop_duplicates()),
            entity=", ".join(entity_keys(entity)),
            timestamp=timestamp,
            label=label,
            task=task,
            features=feats,
            kinds=kinds,
            missing=missing,
            distinct=distinct,
            constant=constant,
            high_cardinality=high_card,
            ranked=ranked,
            mi=mi,
            rho=rho,
            t_min=ts.min(),
            t_max=ts.max(),
            target=target,
        )


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def _mutual_information(
    df: pd.DataFrame, feats: list[str], kinds: dict[str, Kind], target: Target
) -> dict[str, float]:
    """Mutual information (nats) between each feature and the label.

    Computed on at most ``MI_SAMPLE_ROWS`` labelled rows; categoricals are
    ordinal-encoded (missing is a category of its own) and treated as discrete;
    numeric NaN are imputed by the column median for this computation only.
    """
    labelled = target.raw.notna().to_numpy()
    idx = np.flatnonzero(labelled)
    if len(idx) > MI_SAMPLE_ROWS:
        idx = np.sort(np.random.default_rng(SEED).choice(idx, MI_SAMPLE_ROWS, replace=False))
    if len(idx) < 10:
        return dict.fromkeys(feats, 0.0)

    columns: list[np.ndarray] = []
    discrete: list[bool] = []
    for f in feats:
        col = df[f].iloc[idx]
        if kinds[f] == "numeric":
            x = as_float(col)
            finite = x[np.isfinite(x)]
            fill = float(np.median(finite)) if finite.size else 0.0
            columns.append(np.where(np.isfinite(x), x, fill))
            discrete.append(False)
        else:
            codes, _ = pd.factorize(col.astype("object"), use_na_sentinel=True)
            columns.append(codes.astype(float))
            discrete.append(True)
    x_all = np.column_stack(columns)
    mask = np.asarray(discrete)

    if target.task == "regression":
        yv = target.raw.iloc[idx].astype("float64").to_numpy()
        scores = mutual_info_regression(x_all, yv, discrete_features=mask, random_state=SEED)
    else:
        yc, _ = pd.factorize(target.raw.iloc[idx].astype("object"))
        if len(np.unique(yc)) < 2:
            return dict.fromkeys(feats, 0.0)
        scores = mutual_info_classif(x_all, yc, discrete_features=mask, random_state=SEED)
    return {f: max(0.0, float(s)) for f, s in zip(feats, scores, strict=True)}


def _spearman(a: pd.Series, b: pd.Series) -> float:
    """Spearman's rank correlation on pairwise-complete rows (NaN when undefined)."""
    if b.isna().all():
        return math.nan
    x = pd.Series(as_float(a), index=a.index)
    ok = x.notna() & b.notna()
    if ok.sum() < 3:
        return math.nan
    rx, ry = x[ok].rank().to_numpy(), b[ok].rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


# ---------------------------------------------------------------------------
# Ranges, bins and groups the figures share
# ---------------------------------------------------------------------------


def clip_range(x: np.ndarray) -> tuple[float, float]:
    """Range that keeps the central 99% of finite values (or the full range)."""
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.quantile(finite, [0.005, 0.995]))
    if lo == hi:
        lo, hi = float(finite.min()), float(finite.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def bin_edges(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """Histogram edges for ``x``; the flag says whether outer values fall outside them."""
    finite = x[np.isfinite(x)]
    uniq = np.unique(finite)
    if 1 < uniq.size <= 30:
        mids = (uniq[1:] + uniq[:-1]) / 2
        half = float(np.min(np.diff(uniq))) / 2
        return np.concatenate([[uniq[0] - half], mids, [uniq[-1] + half]]), False
    lo, hi = clip_range(finite)
    trimmed = bool(finite.size and (finite.min() < lo or finite.max() > hi))
    if finite.size and np.all(finite == np.round(finite)) and hi - lo <= 60:
        # Whole numbers: one bin per integer, so bars do not alias into a comb.
        return np.arange(math.floor(lo) - 0.5, math.ceil(hi) + 1.0, 1.0), trimmed
    return np.linspace(lo, hi, 41), trimmed


def top_categories(cats: pd.Series) -> tuple[pd.Series, list[str]]:
    """Pool rare categories as ``(other)``; return the pooled series and its order."""
    counts = cats.value_counts()
    real = [c for c in counts.index if c != MISSING]
    keep = set(real[:MAX_CATEGORIES_SHOWN])
    pooled = cats.map(lambda c: c if c in keep or c == MISSING else OTHER)
    order = [c for c in real if c in keep]
    if len(real) > len(keep):
        order.append(OTHER)
    else:
        order = _sorted_values(order)  # every category shown: natural order reads best
    if MISSING in counts.index:
        order.append(MISSING)
    return pooled, order


def period(ts: pd.Series) -> tuple[str, str]:
    """Pandas period frequency and its word, chosen from the time span."""
    span = ts.max() - ts.min()
    if span > pd.Timedelta(days=180):
        return "M", "month"
    if span > pd.Timedelta(days=21):
        return "W", "week"
    return "D", "day"


# ---------------------------------------------------------------------------
# Numbers as text (figures, tables and Markdown)
# ---------------------------------------------------------------------------


def fmt(x: float) -> str:
    if not math.isfinite(x):
        return "—"
    ax = abs(x)
    if ax != 0 and (ax >= 1e6 or ax < 1e-3):
        return f"{x:.3g}"
    if ax >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}" if ax < 1 else f"{x:,.3g}" if ax < 100 else f"{x:,.1f}"


def fixed(x: float, digits: int, *, sign: bool = False) -> str:
    """Fixed-point number without a negative zero ("-0.00" reads as a sign that is not there)."""
    if not math.isfinite(x):
        return "—"
    text = f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"
    return text if float(text) != 0 else f"{0:.{digits}f}"
