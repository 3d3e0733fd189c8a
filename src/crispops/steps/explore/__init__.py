"""The ``explore`` step: a self-contained exploratory data analysis report.

Given the label rows joined to their features, the step writes two files:

- one HTML page with every plot inline as SVG (drawn with matplotlib), inline CSS,
  no JavaScript and no external reference of any kind, so it renders offline and
  inside the Kubeflow Pipelines HTML viewer;
- a short Markdown summary for the KFP Markdown viewer.

Nothing here names a dataset column: entity, timestamp, label, task and features
all come from the arguments.
"""

from __future__ import annotations

import html
import io
import math
import os
import re
import tempfile
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter
from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = ["ExploreResult", "explore"]

Task = Literal["binary", "multiclass", "regression"]
Kind = Literal["numeric", "categorical"]

#: At most this many features get a distribution plot.
MAX_DISTRIBUTION_FEATURES = 24
#: Mutual information is estimated on a random sample of at most this many rows.
MI_SAMPLE_ROWS = 20_000
#: Classes beyond this many (by frequency) are pooled as "(other)" in plots.
MAX_CLASSES_SHOWN = 8
#: Categories beyond this many (by frequency) are pooled as "(other)" in plots.
MAX_CATEGORIES_SHOWN = 12
#: Caps on the features drawn in the ranked bar chart, heatmap and missingness chart.
MAX_BAR_FEATURES = 30
MAX_HEATMAP_FEATURES = 30
#: A categorical with more distinct values than this, and than a tenth of the rows, is
#: flagged: its mutual information is inflated (every rare value looks predictive).
HIGH_CARDINALITY_MIN = 20
#: Features with more missing values than this are listed in the Markdown summary.
MISSING_WARN_FRACTION = 0.20
#: Figure size in inches of an ordinary plot.
FIGSIZE = (6.0, 3.2)
SEED = 0

OTHER = "(other)"
MISSING = "(missing)"

PALETTE = [
    "#4C72B0",
    "#DD8452",
    "#55A868",
    "#C44E52",
    "#8172B3",
    "#937860",
    "#DA8BC3",
    "#8C8C8C",
    "#CCB974",
    "#64B5CD",
]

_STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "path",  # glyphs as paths: no font files needed by the viewer
    "svg.hashsalt": "crispops-explore",  # deterministic element ids
    "text.parse_math": False,  # a "$" in a column or category name is just a dollar
    "font.family": "DejaVu Sans",
    "font.size": 8.5,
    "axes.titlesize": 9.5,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 8.5,
    "axes.labelcolor": "#333333",
    "axes.edgecolor": "#999999",
    "axes.linewidth": 0.8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "axes.prop_cycle": cycler(color=PALETTE),
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.6,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "xtick.color": "#444444",
    "ytick.color": "#444444",
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
}


@dataclass(frozen=True)
class ExploreResult:
    """What the explore step found; the reports themselves are on disk."""

    n_rows: int
    n_features: int
    plots: int  # number of <svg> plots embedded in the HTML report
    label_summary: dict[str, float]  # class -> share, or mean/std/min/max for regression
    missing: dict[str, float]  # feature -> null fraction
    top_associations: list[tuple[str, float]]  # feature, association with label; strongest first


def explore(
    df: pd.DataFrame,
    *,
    entity: str,
    timestamp: str,
    label: str,
    task: Literal["binary", "multiclass", "regression"],
    features: Sequence[str],
    html_path: Path,
    markdown_path: Path,
    title: str = "Exploratory data analysis",
) -> ExploreResult:
    """Profile ``df`` and write an HTML report and a Markdown summary.

    ``df`` holds the entity, timestamp, label and feature columns. Features may be
    numeric (with NaN) or categorical (strings or ``category``, with None).
    Raises ``ValueError`` for an empty frame, a missing column (named in the
    message), an unknown task, or a label unusable for the task.
    """
    feats = _validate(
        df, entity=entity, timestamp=timestamp, label=label, task=task, features=features
    )
    ts = _as_utc(df[timestamp], timestamp)
    y = df[label]
    kinds: dict[str, Kind] = {f: _kind(df[f]) for f in feats}
    missing = {f: float(df[f].isna().mean()) for f in feats}
    distinct = {f: int(df[f].nunique(dropna=True)) for f in feats}
    constant = [f for f in feats if distinct[f] <= 1]
    many_values = max(HIGH_CARDINALITY_MIN, len(df) // 10)
    high_card = [f for f in feats if kinds[f] == "categorical" and distinct[f] > many_values]

    target = _Target.build(y, task, label)
    mi = _mutual_information(df, feats, kinds, target)
    ranked = sorted(feats, key=lambda f: (-mi[f], feats.index(f)))
    rho = {f: _spearman(df[f], target.numeric) for f in feats if kinds[f] == "numeric"}

    facts = _Facts(
        title=title,
        n_rows=len(df),
        n_entities=int(df[entity].nunique(dropna=True)),
        entity=entity,
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

    with matplotlib.rc_context(_STYLE):
        report = _Report()
        body = _html_body(df, ts, facts, report)
    page = _html_page(title, body)

    _write_atomic(Path(html_path), page)
    _write_atomic(Path(markdown_path), _markdown(facts))

    return ExploreResult(
        n_rows=len(df),
        n_features=len(feats),
        plots=report.plots,
        label_summary=target.summary,
        missing=missing,
        top_associations=[(f, mi[f]) for f in ranked],
    )


# ---------------------------------------------------------------------------
# Validation and typing of the input
# ---------------------------------------------------------------------------


def _validate(
    df: pd.DataFrame,
    *,
    entity: str,
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
    roles = [("entity", entity), ("timestamp", timestamp), ("label", label)]
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


def _as_utc(s: pd.Series, name: str) -> pd.Series:
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


def _as_float(s: pd.Series) -> np.ndarray:
    return np.asarray(s.astype("float64"), dtype=float)


def _as_category_text(s: pd.Series) -> pd.Series:
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
class _Target:
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
    def build(cls, y: pd.Series, task: str, name: str) -> _Target:
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
class _Facts:
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
    target: _Target


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def _mutual_information(
    df: pd.DataFrame, feats: list[str], kinds: dict[str, Kind], target: _Target
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
            x = _as_float(col)
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
    x = pd.Series(_as_float(a), index=a.index)
    ok = x.notna() & b.notna()
    if ok.sum() < 3:
        return math.nan
    rx, ry = x[ok].rank().to_numpy(), b[ok].rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


@dataclass
class _Report:
    """Turns matplotlib figures into inline SVG figures and counts them."""

    plots: int = 0

    def figure(self, fig: Figure, caption: str, *, wide: bool = False) -> str:
        self.plots += 1
        svg = _inline_svg(fig, prefix=f"p{self.plots}-", label=caption)
        fig.clear()
        cls = "plot wide" if wide else "plot"
        return (
            f'<figure class="{cls}">{svg}'
            f"<figcaption><b>Figure {self.plots}.</b> {html.escape(caption)}</figcaption>"
            "</figure>"
        )


_PROLOGUE = re.compile(r"\A.*?(?=<svg\b)", re.S)
_NAMESPACES = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_ID = re.compile(r'\bid="([^"]+)"')
_HREF = re.compile(r'href="#([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")


def _inline_svg(fig: Figure, *, prefix: str, label: str) -> str:
    """The figure as an ``<svg>`` element ready to sit inside an HTML page.

    The XML prologue, DOCTYPE, RDF metadata and namespace declarations are
    dropped (the HTML parser implies them), and every element id is prefixed so
    that ids stay unique when many plots share one document.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue().decode("utf-8")
    svg = _PROLOGUE.sub("", svg, count=1)
    svg = _METADATA.sub("", svg)
    svg = _NAMESPACES.sub("", svg)
    svg = _ID.sub(lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = _HREF.sub(lambda m: f'href="#{prefix}{m.group(1)}"', svg)
    svg = _URL.sub(lambda m: f"url(#{prefix}{m.group(1)})", svg)
    attrs = f' role="img" aria-label="{html.escape(label, quote=True)}"'
    return svg.replace("<svg", "<svg" + attrs, 1).strip()


def _new_figure(width: float = FIGSIZE[0], height: float = FIGSIZE[1]) -> tuple[Figure, Axes]:
    # A bare Figure is not registered with pyplot: no global state, no GUI backend,
    # and nothing to leak when it goes out of scope.
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _class_colors(shown: list[str]) -> dict[str, str]:
    return {c: ("#B0B0B0" if c == OTHER else _color(i)) for i, c in enumerate(shown)}


def _plot_target(t: _Target) -> Figure:
    fig, ax = _new_figure()
    if t.task == "regression":
        v = t.raw.dropna().astype("float64").to_numpy()
        lo, hi = _clip_range(v)
        ax.hist(
            v,
            bins=40,
            range=(lo, hi),
            color=PALETTE[0],
            alpha=0.85,
            edgecolor="white",
            linewidth=0.4,
        )
        ax.axvline(float(np.mean(v)), color=PALETTE[3], lw=1.2, label=f"mean {_fmt(np.mean(v))}")
        ax.axvline(
            float(np.median(v)),
            color=PALETTE[2],
            lw=1.2,
            ls="--",
            label=f"median {_fmt(np.median(v))}",
        )
        trimmed = bool(v.min() < lo or v.max() > hi)
        ax.set_xlabel(_short(t.name, 40) + ("  (central 99% of values shown)" if trimmed else ""))
        ax.set_ylabel("rows")
        ax.legend(loc="upper right")
        ax.grid(axis="x", visible=False)
        return fig

    classes = t.classes[:30]
    counts = [t.counts[c] for c in classes]
    total = max(sum(t.counts.values()), 1)
    many = len(classes) > MAX_CLASSES_SHOWN  # one colour rather than a repeating palette
    colors = [PALETTE[0] if many else _color(i) for i in range(len(classes))]
    if len(classes) <= 12:
        pos = np.arange(len(classes))
        ax.bar(pos, counts, color=colors, width=0.55 if len(classes) > 2 else 0.45)
        ax.set_xticks(pos, [_short(c, 16) for c in classes])
        for p, n in zip(pos, counts, strict=True):
            ax.annotate(
                f"{n / total:.1%}",
                (p, n),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
                color="#333333",
            )
        ax.set_ylabel("rows")
        ax.set_ylim(0, max(counts) * 1.15)
        ax.grid(axis="x", visible=False)
        if len(classes) > 5:
            ax.tick_params(axis="x", labelrotation=30)
            for tick in ax.get_xticklabels():
                tick.set_horizontalalignment("right")
    else:
        fig.set_size_inches(FIGSIZE[0], 1.0 + 0.2 * len(classes))
        pos = np.arange(len(classes))[::-1]
        ax.barh(pos, counts, color=PALETTE[0], height=0.7)
        ax.set_yticks(pos, [_short(c, 24) for c in classes])
        ax.set_xlabel("rows")
        ax.grid(axis="y", visible=False)
    ax.set_title(f"{_short(t.name, 40)}")
    return fig


def _plot_missing(names: list[str], fractions: list[float]) -> Figure:
    height = min(1.0 + 0.24 * len(names), 8.0)
    fig, ax = _new_figure(FIGSIZE[0], max(height, 1.8))
    pos = np.arange(len(names))[::-1]
    ax.barh(pos, fractions, color=PALETTE[3], height=0.65)
    ax.set_yticks(pos, [_short(n) for n in names])
    for p, v in zip(pos, fractions, strict=True):
        ax.annotate(
            f"{v:.1%}",
            (v, p),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=7.5,
            color="#333333",
        )
    ax.set_xlim(0, min(1.0, max(fractions) * 1.2 + 0.02))
    ax.xaxis.set_major_formatter(_percent())
    ax.set_xlabel("share of rows missing")
    ax.grid(axis="y", visible=False)
    return fig


def _percent_text(x: float, _pos: float | None = None) -> str:
    whole = abs(x * 100 - round(x * 100)) < 1e-9
    return f"{x:.0%}" if whole else f"{x:.1%}"


def _percent() -> FuncFormatter:
    """A fresh percent tick formatter (formatters are bound to one axis each)."""
    return FuncFormatter(_percent_text)


def _clip_range(x: np.ndarray) -> tuple[float, float]:
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


def _bin_edges(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """Histogram edges for ``x``; the flag says whether outer values fall outside them."""
    finite = x[np.isfinite(x)]
    uniq = np.unique(finite)
    if 1 < uniq.size <= 30:
        mids = (uniq[1:] + uniq[:-1]) / 2
        half = float(np.min(np.diff(uniq))) / 2
        return np.concatenate([[uniq[0] - half], mids, [uniq[-1] + half]]), False
    lo, hi = _clip_range(finite)
    trimmed = bool(finite.size and (finite.min() < lo or finite.max() > hi))
    if finite.size and np.all(finite == np.round(finite)) and hi - lo <= 60:
        # Whole numbers: one bin per integer, so bars do not alias into a comb.
        return np.arange(math.floor(lo) - 0.5, math.ceil(hi) + 1.0, 1.0), trimmed
    return np.linspace(lo, hi, 41), trimmed


def _plot_numeric_by_class(name: str, x: np.ndarray, t: _Target) -> tuple[Figure, bool]:
    fig, ax = _new_figure()
    edges, clipped = _bin_edges(x)
    colors = _class_colors(t.shown)
    text = t.text.to_numpy(dtype=object)
    inside = np.isfinite(x) & (x >= edges[0]) & (x <= edges[-1])
    for c in t.shown:
        sel = (text == c) & np.isfinite(x)
        if not (sel & inside).any():
            continue
        h, _ = np.histogram(x[sel & inside], bins=edges)
        h = h / max(int(sel.sum()), 1)  # share of the class's rows, so classes compare
        if len(t.shown) <= 3:  # fills of many classes only muddy each other
            ax.stairs(h, edges, fill=True, alpha=0.16, color=colors[c])
        ax.stairs(
            h, edges, color=colors[c], linewidth=1.3, label=f"{_short(c, 18)} (n={sel.sum():,})"
        )
    ax.set_title(_short(name, 50))
    ax.set_ylabel("share of class rows")
    ax.yaxis.set_major_formatter(_percent())
    ax.set_xlabel(_short(name, 40) + ("  (central 99% of values shown)" if clipped else ""))
    if len(t.shown) > 4:  # many classes: legend beside the plot
        ax.legend(
            title=_short(t.name, 24),
            title_fontsize=7.5,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
        )
    else:
        ax.legend(title=_short(t.name, 24), title_fontsize=7.5, loc="best")
    ax.set_ylim(bottom=0)
    ax.grid(axis="x", visible=False)
    return fig, clipped


def _plot_numeric_vs_target(name: str, x: np.ndarray, t: _Target) -> Figure:
    fig, ax = _new_figure()
    yv = t.numeric.to_numpy(dtype=float)
    ok = np.isfinite(x) & np.isfinite(yv)
    xs, ys = x[ok], yv[ok]
    if xs.size:
        quantiles = np.unique(np.quantile(xs, np.linspace(0, 1, 21)))
        if quantiles.size < 2:
            quantiles = np.array([xs.min() - 0.5, xs.max() + 0.5])
        bins = np.clip(np.searchsorted(quantiles, xs, side="right") - 1, 0, quantiles.size - 2)
        frame = pd.DataFrame({"b": bins, "x": xs, "y": ys}).groupby("b")
        centre = frame["x"].median()
        mean = frame["y"].mean()
        q1, q3 = frame["y"].quantile(0.25), frame["y"].quantile(0.75)
        ax.fill_between(
            centre, q1, q3, color=PALETTE[0], alpha=0.18, lw=0, label="interquartile range"
        )
        ax.plot(
            centre,
            mean,
            marker="o",
            ms=3,
            color=PALETTE[0],
            lw=1.5,
            label=f"mean {_short(t.name, 20)}",
        )
        ax.axhline(float(np.mean(ys)), color="#999999", lw=0.9, ls="--", label="overall mean")
        ax.legend(loc="best")
    ax.set_title(_short(name, 50))
    ax.set_xlabel(f"{_short(name, 40)} (quantile bins)")
    ax.set_ylabel(_short(t.name, 30))
    return fig


def _top_categories(cats: pd.Series) -> tuple[pd.Series, list[str]]:
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


def _plot_categorical_by_class(name: str, s: pd.Series, t: _Target) -> Figure:
    pooled, order = _top_categories(_as_category_text(s))
    labelled = t.text.notna()
    table = pd.crosstab(pooled[labelled], t.text[labelled])
    table = table.reindex(index=order, columns=t.shown, fill_value=0)
    sizes = table.sum(axis=1)
    shares = table.div(sizes.where(sizes > 0, 1), axis=0)
    height = max(2.0, 1.3 + 0.25 * len(order))
    fig, ax = _new_figure(FIGSIZE[0], height)
    colors = _class_colors(t.shown)
    pos = np.arange(len(order))[::-1]
    left = np.zeros(len(order))
    for c in t.shown:
        vals = shares[c].to_numpy(dtype=float)
        ax.barh(pos, vals, left=left, color=colors[c], height=0.7, label=_short(c, 18))
        left += vals
    ax.set_yticks(pos, [_short(str(c), 22) for c in order])
    for p, n in zip(pos, sizes.to_numpy(), strict=True):
        ax.annotate(
            f"n={int(n):,}",
            (1.0, p),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
            color="#555555",
            annotation_clip=False,
        )
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(_percent())
    ax.set_xlabel(f"share of rows by {_short(t.name, 30)}")
    ax.grid(axis="y", visible=False)
    ncols = min(len(t.shown), 4)
    ax.legend(
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        ncols=ncols,
        borderaxespad=0.2,
        handlelength=1.2,
        columnspacing=1.0,
    )
    rows = math.ceil(len(t.shown) / ncols)
    ax.set_title(_short(name, 30 if len(t.shown) > 2 else 44), pad=4 + 12 * (rows - 1))
    return fig


def _plot_categorical_vs_target(name: str, s: pd.Series, t: _Target) -> Figure:
    pooled, order = _top_categories(_as_category_text(s))
    frame = pd.DataFrame({"c": pooled, "y": t.numeric}).dropna(subset=["y"])
    stats = frame.groupby("c")["y"].agg(["mean", "std", "count"]).reindex(order)
    height = max(2.0, 1.0 + 0.25 * len(order))
    fig, ax = _new_figure(FIGSIZE[0], height)
    pos = np.arange(len(order))[::-1]
    se = (stats["std"].fillna(0) / np.sqrt(stats["count"].clip(lower=1))).to_numpy()
    ax.barh(
        pos,
        stats["mean"].to_numpy(dtype=float),
        xerr=se,
        color=PALETTE[0],
        height=0.65,
        error_kw={"ecolor": "#555555", "elinewidth": 0.8, "capsize": 2},
    )
    ax.axvline(float(frame["y"].mean()), color="#999999", lw=0.9, ls="--")
    ax.set_yticks(pos, [_short(str(c), 22) for c in order])
    ax.set_xlabel(f"mean {_short(t.name, 30)} (± standard error); dashed: overall mean")
    ax.set_title(_short(name, 50))
    ax.grid(axis="y", visible=False)
    return fig


def _plot_correlations(corr: pd.DataFrame) -> Figure:
    n = len(corr)
    side = min(2.4 + 0.25 * n, 6.5)
    fig, ax = _new_figure(side + 0.9, side)
    values = corr.to_numpy(dtype=float)
    # pcolormesh draws vector cells (imshow would embed a raster image in the SVG)
    img = ax.pcolormesh(
        np.ma.masked_invalid(values),
        cmap="RdBu_r",
        vmin=-1,
        vmax=1,
        edgecolors="white",
        linewidth=0.5,
    )
    ax.set_aspect("equal")
    ax.invert_yaxis()
    names = [_short(str(c), 22) for c in corr.columns]
    ax.set_xticks(np.arange(n) + 0.5, names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(np.arange(n) + 0.5, names)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                v = values[i, j]
                if np.isfinite(v):
                    ax.text(
                        j + 0.5,
                        i + 0.5,
                        _num(v, 2),
                        ha="center",
                        va="center",
                        fontsize=6.5,
                        color="white" if abs(v) > 0.6 else "#222222",
                    )
    cbar = fig.colorbar(img, ax=ax, shrink=0.8, pad=0.02)
    if cbar.solids is not None:
        cbar.solids.set_rasterized(False)  # keep the colour ramp vector, not an embedded PNG
        cbar.solids.set_edgecolor("face")  # and without seams between its cells
    cbar.ax.tick_params(labelsize=7)
    cbar.set_label("Spearman ρ", fontsize=8)
    return fig


def _plot_associations(names: list[str], scores: list[float], kinds: list[Kind]) -> Figure:
    height = min(1.2 + 0.22 * len(names), 8.0)
    fig, ax = _new_figure(FIGSIZE[0], max(height, 1.6))
    pos = np.arange(len(names))[::-1]
    colors = [PALETTE[0] if k == "numeric" else PALETTE[1] for k in kinds]
    ax.barh(pos, scores, color=colors, height=0.6)
    ax.set_yticks(pos, [_short(n) for n in names])
    ax.set_xlabel("mutual information with the label (nats)")
    ax.grid(axis="y", visible=False)
    handles = [
        Patch(color=PALETTE[0], label="numeric"),
        Patch(color=PALETTE[1], label="categorical"),
    ]
    ax.legend(
        handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, borderaxespad=0.2
    )
    return fig


def _period(ts: pd.Series) -> tuple[str, str]:
    """Pandas period frequency and its word, chosen from the time span."""
    span = ts.max() - ts.min()
    if span > pd.Timedelta(days=180):
        return "M", "month"
    if span > pd.Timedelta(days=21):
        return "W", "week"
    return "D", "day"


def _plot_over_time(ts: pd.Series, t: _Target) -> tuple[Figure, str]:
    freq, word = _period(ts)
    ok = ts.notna() & t.raw.notna()
    starts = ts[ok].dt.to_period(freq).dt.start_time
    counts = starts.groupby(starts).size()
    fig = Figure(figsize=(8.0, 3.6), layout="constrained")
    ax, ax_n = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])

    if t.task == "regression":
        grouped = t.numeric[ok].groupby(starts)
        mean, q1, q3 = grouped.mean(), grouped.quantile(0.25), grouped.quantile(0.75)
        ax.fill_between(
            q1.index,
            q1.to_numpy(),
            q3.to_numpy(),
            color=PALETTE[0],
            alpha=0.18,
            lw=0,
            label="interquartile range",
        )
        ax.plot(
            mean.index,
            mean.to_numpy(),
            marker="o",
            ms=3,
            color=PALETTE[0],
            lw=1.6,
            label=f"mean {_short(t.name, 24)}",
        )
        ax.set_ylabel(_short(t.name, 30))
        what = f"mean {t.name} per {word}"
        title = f"{_short(t.name, 30)} per {word}"
    elif t.task == "binary" and t.positive is not None:
        rate = t.numeric[ok].groupby(starts).mean()
        ax.plot(
            rate.index,
            rate.to_numpy(),
            marker="o",
            ms=3,
            color=PALETTE[3],
            lw=1.6,
            label=f"{_short(t.name, 20)} = {_short(t.positive, 12)}",
        )
        ax.yaxis.set_major_formatter(_percent())
        ax.set_ylabel("share of rows")
        ax.set_ylim(0, min(1.0, max(float(rate.max()) * 1.25, 0.05)))
        what = f"share of rows with {t.name} = {t.positive} per {word}"
        title = f"share of {_short(t.name, 24)} = {_short(t.positive, 12)} per {word}"
    else:
        shares = pd.crosstab(starts, t.text[ok], normalize="index")
        shares = shares.reindex(columns=t.shown, fill_value=0.0)
        colors = _class_colors(t.shown)
        for c in t.shown:
            ax.plot(
                shares.index,
                shares[c].to_numpy(),
                marker="o",
                ms=2.5,
                lw=1.4,
                color=colors[c],
                label=_short(c, 18),
            )
        ax.yaxis.set_major_formatter(_percent())
        ax.set_ylabel("share of rows")
        ax.set_ylim(0, 1)
        what = f"share of each {t.name} class per {word}"
        title = f"{_short(t.name, 30)} class shares per {word}"
    ax.set_title(title)
    if len(t.shown) > 4:  # many classes: legend beside the plot, not over the title
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, borderaxespad=0.2)

    width = {"M": 24.0, "W": 5.5, "D": 0.8}[freq]
    ax_n.bar(
        counts.index,
        counts.to_numpy(),
        width=width,
        color="#c9c9c9",
        align="edge" if freq == "D" else "center",
    )
    ax_n.set_ylabel("rows", color="#666666")
    ax_n.grid(axis="x", visible=False)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=9)
    ax_n.xaxis.set_major_locator(locator)
    ax_n.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    return fig, what


# ---------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------

_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d8dee4;--soft:#f6f8fa;--accent:#4C72B0;--warn:#9a6700}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--soft);color:var(--fg);
 font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1260px;margin:0 auto;padding:24px 20px 40px}
header h1{font-size:24px;margin:0 0 2px}
header p{color:var(--muted);margin:0}
nav{margin:14px 0 0;font-size:13px}
nav a{color:var(--accent);text-decoration:none;margin-right:14px;white-space:nowrap}
nav a:hover{text-decoration:underline}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px 20px 18px;
 margin:16px 0}
h2{font-size:18px;margin:0 0 10px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:14px;margin:16px 0 6px}
p{margin:6px 0}
.note{color:var(--muted);font-size:13px}
.warn{color:var(--warn)}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);
 padding:1px 4px;border-radius:4px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:10px;
 margin:4px 0 8px}
.card{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:8px 12px}
.card .k{color:var(--muted);font-size:11.5px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:18px;font-weight:600;overflow-wrap:anywhere}
.card.span2{grid-column:span 2}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:18px 22px;
 align-items:start}
.row{display:flex;flex-wrap:wrap;gap:18px 28px;align-items:flex-start}
.row>figure{flex:1 1 480px;max-width:660px}
.row>.tablewrap{flex:1 1 360px}
figure{margin:8px 0}
figure.plot svg{display:block;width:100%;max-width:640px;height:auto}
figure.plot.wide svg{max-width:800px}
figure.plot.wide figcaption{max-width:800px}
figcaption{color:var(--muted);font-size:12.5px;margin-top:4px;max-width:640px}
.tablewrap{overflow-x:auto;max-height:560px;overflow-y:auto}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600;position:sticky;top:0}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.meter{display:inline-block;height:8px;background:#C44E52;border-radius:2px;
 vertical-align:middle;margin-left:6px}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:18px}
@media print{body{background:#fff}section{break-inside:avoid;border:none}}
"""

_SECTIONS = [
    ("overview", "Overview"),
    ("target", "Target balance"),
    ("missingness", "Missingness"),
    ("distributions", "Distributions by label"),
    ("correlations", "Correlations"),
    ("associations", "Feature–label relationships"),
    ("over-time", "Label over time"),
]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "—"
    ax = abs(x)
    if ax != 0 and (ax >= 1e6 or ax < 1e-3):
        return f"{x:.3g}"
    if ax >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}" if ax < 1 else f"{x:,.3g}" if ax < 100 else f"{x:,.1f}"


def _num(x: float, digits: int, *, sign: bool = False) -> str:
    """Fixed-point number without a negative zero ("-0.00" reads as a sign that is not there)."""
    if not math.isfinite(x):
        return "—"
    text = f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"
    return text if float(text) != 0 else f"{0:.{digits}f}"


def _when(ts: pd.Timestamp) -> str:
    if pd.isna(ts):
        return "—"
    if ts == ts.normalize():
        return ts.strftime("%Y-%m-%d")
    return ts.strftime("%Y-%m-%d %H:%M")


def _table(header: list[tuple[str, bool]], rows: list[list[str]]) -> str:
    """An HTML table; cells are already-escaped HTML, the flag marks numeric columns."""
    head = "".join(f'<th class="n">{h}</th>' if num else f"<th>{h}</th>" for h, num in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{c}</td>' if header[i][1] else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="tablewrap">{table}</div>'


def _section(key: str, inner: str) -> str:
    heading = dict(_SECTIONS)[key]
    return f'<section id="{key}"><h2>{_e(heading)}</h2>{inner}</section>'


def _html_body(df: pd.DataFrame, ts: pd.Series, f: _Facts, report: _Report) -> str:
    parts = [
        _overview(f),
        _target_section(f, report),
        _missing_section(f, report),
        _distribution_section(df, f, report),
        _correlation_section(df, f, report),
        _association_section(f, report),
        _time_section(ts, f, report),
    ]
    return "".join(parts)


def _overview(f: _Facts) -> str:
    n_num = sum(1 for k in f.kinds.values() if k == "numeric")
    n_cat = len(f.features) - n_num
    cards = [
        ("rows", f"{f.n_rows:,}"),
        (f"entities ({f.entity})", f"{f.n_entities:,}"),
        ("features", f"{len(f.features)}"),
        ("task", f.task),
        ("label", f.label),
    ]
    html_cards = "".join(
        f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div></div>'
        for k, v in cards
    )
    html_cards += (
        '<div class="card span2"><div class="k">time range (UTC)</div>'
        f'<div class="v">{_e(_when(f.t_min))} → {_e(_when(f.t_max))}</div></div>'
    )
    labelled = int(f.target.raw.notna().sum())
    notes = [
        f"{n_num} numeric and {n_cat} categorical feature{'s' if n_cat != 1 else ''}; "
        f"event time from <code>{_e(f.timestamp)}</code>.",
    ]
    if labelled < f.n_rows:
        notes.append(
            f'<span class="warn">{f.n_rows - labelled:,} rows have no label and are '
            "left out of the label plots.</span>"
        )
    if f.constant:
        notes.append(
            '<span class="warn">Constant features (one distinct value or none): '
            + ", ".join(f"<code>{_e(c)}</code>" for c in f.constant)
            + ".</span>"
        )
    return _section(
        "overview", f'<div class="cards">{html_cards}</div>' + "".join(f"<p>{n}</p>" for n in notes)
    )


def _target_section(f: _Facts, report: _Report) -> str:
    t = f.target
    fig = _plot_target(t)
    if t.task == "regression":
        mean, std = _fmt(t.summary["mean"]), _fmt(t.summary["std"])
        cap = f"Distribution of {t.name}; mean {mean}, std {std}."
        rows = [[_e(k), _fmt(v)] for k, v in t.summary.items()]
        table = _table([("statistic", False), ("value", True)], rows)
    else:
        cap = f"Rows per {t.name} class, labelled with each class's share."
        rows = [[_e(c), f"{t.counts[c]:,}", f"{t.summary[c]:.1%}"] for c in t.classes]
        table = _table([("class", False), ("rows", True), ("share", True)], rows)
    return _section("target", f'<div class="row">{report.figure(fig, cap)}{table}</div>')


def _missing_section(f: _Facts, report: _Report) -> str:
    order = sorted(f.features, key=lambda c: (-f.missing[c], f.features.index(c)))
    with_missing = [c for c in order if f.missing[c] > 0]
    rows = [
        [
            f"<code>{_e(c)}</code>",
            f.kinds[c],
            f"{f.distinct[c]:,}",
            f"{round(f.missing[c] * f.n_rows):,}",
            f"{f.missing[c]:.1%}"
            + (
                f'<span class="meter" style="width:{max(1, round(60 * f.missing[c]))}px"></span>'
                if f.missing[c] > 0
                else ""
            ),
        ]
        for c in order
    ]
    table = _table(
        [
            ("feature", False),
            ("kind", False),
            ("distinct", True),
            ("missing", True),
            ("missing share", True),
        ],
        rows,
    )
    if not with_missing:
        return _section("missingness", "<p>No feature has missing values.</p>" + table)
    shown = with_missing[:MAX_BAR_FEATURES]
    fig = _plot_missing(shown, [f.missing[c] for c in shown])
    cap = f"Share of rows with no value, for the {len(shown)} feature(s) that have missing values"
    if len(with_missing) > len(shown):
        cap += f" (the {len(shown)} highest of {len(with_missing)})"
    cap += "."
    return _section("missingness", f'<div class="row">{report.figure(fig, cap)}{table}</div>')


def _distribution_section(df: pd.DataFrame, f: _Facts, report: _Report) -> str:
    t = f.target
    shown = f.ranked[:MAX_DISTRIBUTION_FEATURES]
    figures: list[str] = []
    for name in shown:
        s = df[name]
        if f.kinds[name] == "numeric":
            x = _as_float(s)
            if not np.isfinite(x).any():
                continue
            if t.task == "regression":
                fig = _plot_numeric_vs_target(name, x, t)
                cap = f"{name}: mean {t.name} (line) and its interquartile range per quantile bin."
            else:
                fig, _ = _plot_numeric_by_class(name, x, t)
                cap = f"{name}: distribution within each {t.name} class."
        else:
            if t.task == "regression":
                fig = _plot_categorical_vs_target(name, s, t)
                cap = f"{name}: mean {t.name} per category."
            else:
                fig = _plot_categorical_by_class(name, s, t)
                cap = f"{name}: share of each {t.name} class within each category."
        if f.missing[name] > 0:
            cap += f" {f.missing[name]:.1%} missing."
        figures.append(report.figure(fig, cap))
    intro = (
        '<p class="note">Features are ordered by their mutual information with the label, '
        "strongest first. Rare categories are pooled as <i>(other)</i>.</p>"
    )
    if len(f.ranked) > len(shown):
        intro += (
            f'<p class="warn">Showing {len(shown)} of {len(f.ranked)} features (the '
            f"{len(shown)} most associated with the label); the other "
            f"{len(f.ranked) - len(shown)} are listed under "
            '<a href="#associations">feature–label relationships</a>.</p>'
        )
    return _section("distributions", intro + f'<div class="grid">{"".join(figures)}</div>')


def _correlation_section(df: pd.DataFrame, f: _Facts, report: _Report) -> str:
    numeric = [c for c in f.ranked if f.kinds[c] == "numeric" and f.distinct[c] > 1]
    if len(numeric) < 2:
        return _section(
            "correlations",
            "<p>Fewer than two non-constant numeric features: no correlation matrix.</p>",
        )
    shown = numeric[:MAX_HEATMAP_FEATURES]
    shown = [c for c in f.features if c in set(shown)]
    frame = pd.DataFrame({c: _as_float(df[c]) for c in shown})
    corr = frame.corr(method="spearman", min_periods=3)
    fig = _plot_correlations(corr)
    cap = "Spearman rank correlation between numeric features (pairwise-complete rows)."
    if len(numeric) > len(shown):
        cap += f" Showing the {len(shown)} of {len(numeric)} most associated with the label."
    pairs = []
    cols = list(corr.columns)
    for i, a in enumerate(cols):
        for b in cols[i + 1 :]:
            v = float(corr.loc[a, b])
            if math.isfinite(v):
                pairs.append((abs(v), v, a, b))
    pairs.sort(reverse=True)
    rows = [
        [f"<code>{_e(a)}</code>", f"<code>{_e(b)}</code>", _num(v, 2, sign=True)]
        for _, v, a, b in pairs[:10]
    ]
    table = "<h3>Strongest pairs</h3>" + _table(
        [("feature", False), ("feature", False), ("ρ", True)], rows
    )
    return _section(
        "correlations",
        f'<div class="row">{report.figure(fig, cap, wide=True)}'
        f'<div class="tablewrap">{table}</div></div>',
    )


def _association_section(f: _Facts, report: _Report) -> str:
    shown = f.ranked[:MAX_BAR_FEATURES]
    fig = _plot_associations(shown, [f.mi[c] for c in shown], [f.kinds[c] for c in shown])
    cap = (
        "Mutual information between each feature and the label, estimated on "
        f"{'a sample of ' + format(MI_SAMPLE_ROWS, ',') if f.n_rows > MI_SAMPLE_ROWS else 'all'}"
        " labelled rows (categoricals ordinal-encoded, numeric gaps filled with the median)."
    )
    if len(f.ranked) > len(shown):
        cap += f" Top {len(shown)} of {len(f.ranked)} shown; the table lists all."
    with_rho = f.task in ("binary", "regression")
    header: list[tuple[str, bool]] = [
        ("#", True),
        ("feature", False),
        ("kind", False),
        ("mutual information", True),
    ]
    if with_rho:
        header.append(("Spearman ρ with label", True))
    header.append(("missing", True))
    rows = []
    for i, c in enumerate(f.ranked, start=1):
        kind: str = f.kinds[c]
        if c in f.high_cardinality:
            kind = f'{kind}, <span class="warn">high cardinality ({f.distinct[c]:,})</span>'
        row = [str(i), f"<code>{_e(c)}</code>", kind, f"{f.mi[c]:.4f}"]
        if with_rho:
            row.append(_num(f.rho.get(c, math.nan), 3, sign=True))
        row.append(f"{f.missing[c]:.1%}")
        rows.append(row)
    note = ""
    if f.high_cardinality:
        names = ", ".join(f"<code>{_e(c)}</code>" for c in f.high_cardinality)
        note = (
            f'<p class="warn">High-cardinality categorical(s) {names}: their mutual '
            "information is inflated, since rare values look predictive by chance. An "
            "identifier-like column here is a leak, not a signal.</p>"
        )
    return _section(
        "associations",
        f'<div class="row">{report.figure(fig, cap)}{_table(header, rows)}</div>{note}',
    )


def _time_section(ts: pd.Series, f: _Facts, report: _Report) -> str:
    fig, what = _plot_over_time(ts, f.target)
    cap = f"{what[0].upper()}{what[1:]} (top) and labelled rows per {_period(ts)[1]} (bottom)."
    return _section("over-time", report.figure(fig, cap, wide=True))


def _html_page(title: str, body: str) -> str:
    nav = "".join(f'<a href="#{k}">{_e(v)}</a>' for k, v in _SECTIONS)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><main><header><h1>{_e(title)}</h1>"
        "<p>CRISP-DM step <b>explore</b>: what the data looks like before any model sees it."
        f"</p><nav>{nav}</nav></header>{body}"
        "<footer>Generated by crispops explore. Self-contained: no scripts, no external "
        "resources.</footer></main></body></html>\n"
    )


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------


def _md(text: object) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("`", "'")


def _markdown(f: _Facts) -> str:
    t = f.target
    lines = [
        f"# {_md(f.title)}",
        "",
        f"**{f.n_rows:,} rows**, {f.n_entities:,} entities (`{_md(f.entity)}`), "
        f"{len(f.features)} features; task **{f.task}**, label `{_md(f.label)}`.",
        "",
        f"Time range (UTC): {_when(f.t_min)} → {_when(f.t_max)}",
        "",
    ]
    unlabelled = f.n_rows - int(t.raw.notna().sum())
    if unlabelled:
        lines += [f"{unlabelled:,} rows have no label.", ""]
    lines += [
        "## Label balance",
        "",
    ]
    if t.task == "regression":
        lines += ["| statistic | value |", "|---|---:|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in t.summary.items()]
    else:
        lines += ["| class | rows | share |", "|---|---:|---:|"]
        lines += [f"| {_md(c)} | {t.counts[c]:,} | {t.summary[c]:.1%} |" for c in t.classes]
    lines += [
        "",
        "## Top associations with the label",
        "",
        "| # | feature | kind | mutual information |",
        "|---:|---|---|---:|",
    ]
    lines += [
        f"| {i} | {_md(c)} | {f.kinds[c]} | {f.mi[c]:.4f} |"
        for i, c in enumerate(f.ranked[:5], start=1)
    ]
    high = [c for c in f.features if f.missing[c] > MISSING_WARN_FRACTION]
    lines += ["", f"## Features with more than {MISSING_WARN_FRACTION:.0%} missing", ""]
    lines += [f"- {_md(c)}: {f.missing[c]:.1%}" for c in high] or ["None."]
    if f.high_cardinality:
        lines += [
            "",
            "High-cardinality categoricals (mutual information inflated): "
            + ", ".join(_md(c) for c in f.high_cardinality)
            + ".",
        ]
    lines += ["", "## Constant features", ""]
    lines += [f"- {_md(c)}" for c in f.constant] or ["None."]
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
