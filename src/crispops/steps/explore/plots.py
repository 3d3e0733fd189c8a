"""The explore report's figures: matplotlib drawings, inlined in the page as SVG."""

from __future__ import annotations

import html
import io
import math
import re
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from crispops.steps.explore.facts import (
    MAX_CLASSES_SHOWN,
    OTHER,
    Kind,
    Target,
    as_category_text,
    bin_edges,
    clip_range,
    fixed,
    fmt,
    period,
    top_categories,
)

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = [
    "FIGSIZE",
    "PALETTE",
    "inline_svg",
    "plot_associations",
    "plot_categorical_by_class",
    "plot_categorical_vs_target",
    "plot_correlations",
    "plot_missing",
    "plot_numeric_by_class",
    "plot_numeric_vs_target",
    "plot_over_time",
    "plot_target",
    "style",
]

#: Figure size in inches of an ordinary plot.
FIGSIZE = (6.0, 3.2)

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


def style() -> AbstractContextManager[None]:
    """The matplotlib settings of every explore figure, for a ``with`` block."""
    return matplotlib.rc_context(_STYLE)


_PROLOGUE = re.compile(r"\A.*?(?=<svg\b)", re.S)
_NAMESPACES = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_ID = re.compile(r'\bid="([^"]+)"')
_HREF = re.compile(r'href="#([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")


def inline_svg(fig: Figure, *, prefix: str, label: str) -> str:
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


def plot_target(t: Target) -> Figure:
    fig, ax = _new_figure()
    if t.task == "regression":
        v = t.raw.dropna().astype("float64").to_numpy()
        lo, hi = clip_range(v)
        ax.hist(
            v,
            bins=40,
            range=(lo, hi),
            color=PALETTE[0],
            alpha=0.85,
            edgecolor="white",
            linewidth=0.4,
        )
        ax.axvline(float(np.mean(v)), color=PALETTE[3], lw=1.2, label=f"mean {fmt(np.mean(v))}")
        ax.axvline(
            float(np.median(v)),
            color=PALETTE[2],
            lw=1.2,
            ls="--",
            label=f"median {fmt(np.median(v))}",
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


def plot_missing(names: list[str], fractions: list[float]) -> Figure:
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


def plot_numeric_by_class(name: str, x: np.ndarray, t: Target) -> tuple[Figure, bool]:
    fig, ax = _new_figure()
    edges, clipped = bin_edges(x)
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


def plot_numeric_vs_target(name: str, x: np.ndarray, t: Target) -> Figure:
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


def plot_categorical_by_class(name: str, s: pd.Series, t: Target) -> Figure:
    pooled, order = top_categories(as_category_text(s))
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


def plot_categorical_vs_target(name: str, s: pd.Series, t: Target) -> Figure:
    pooled, order = top_categories(as_category_text(s))
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


def plot_correlations(corr: pd.DataFrame) -> Figure:
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
                        fixed(v, 2),
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


def plot_associations(names: list[str], scores: list[float], kinds: list[Kind]) -> Figure:
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


def plot_over_time(ts: pd.Series, t: Target) -> tuple[Figure, str]:
    freq, word = period(ts)
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
