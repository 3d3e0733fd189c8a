"""The explore report as text: one self-contained HTML page and a Markdown summary."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from crispops.steps.explore.facts import MI_SAMPLE_ROWS, Facts, as_float, fixed, fmt, period
from crispops.steps.explore.plots import (
    inline_svg,
    plot_associations,
    plot_categorical_by_class,
    plot_categorical_vs_target,
    plot_correlations,
    plot_missing,
    plot_numeric_by_class,
    plot_numeric_vs_target,
    plot_over_time,
    plot_target,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "MAX_BAR_FEATURES",
    "MAX_DISTRIBUTION_FEATURES",
    "MAX_HEATMAP_FEATURES",
    "MISSING_WARN_FRACTION",
    "Report",
    "html_body",
    "html_page",
    "markdown",
]

#: At most this many features get a distribution plot.
MAX_DISTRIBUTION_FEATURES = 24
#: Caps on the features drawn in the ranked bar chart, heatmap and missingness chart.
MAX_BAR_FEATURES = 30
MAX_HEATMAP_FEATURES = 30
#: Features with more missing values than this are listed in the Markdown summary.
MISSING_WARN_FRACTION = 0.20


# ---------------------------------------------------------------------------
# Figures in the page
# ---------------------------------------------------------------------------


@dataclass
class Report:
    """Turns matplotlib figures into inline SVG figures and counts them."""

    plots: int = 0

    def figure(self, fig: Figure, caption: str, *, wide: bool = False) -> str:
        self.plots += 1
        svg = inline_svg(fig, prefix=f"p{self.plots}-", label=caption)
        fig.clear()
        cls = "plot wide" if wide else "plot"
        return (
            f'<figure class="{cls}">{svg}'
            f"<figcaption><b>Figure {self.plots}.</b> {html.escape(caption)}</figcaption>"
            "</figure>"
        )


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


def html_body(df: pd.DataFrame, ts: pd.Series, f: Facts, report: Report) -> str:
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


def _overview(f: Facts) -> str:
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


def _target_section(f: Facts, report: Report) -> str:
    t = f.target
    fig = plot_target(t)
    if t.task == "regression":
        mean, std = fmt(t.summary["mean"]), fmt(t.summary["std"])
        cap = f"Distribution of {t.name}; mean {mean}, std {std}."
        rows = [[_e(k), fmt(v)] for k, v in t.summary.items()]
        table = _table([("statistic", False), ("value", True)], rows)
    else:
        cap = f"Rows per {t.name} class, labelled with each class's share."
        rows = [[_e(c), f"{t.counts[c]:,}", f"{t.summary[c]:.1%}"] for c in t.classes]
        table = _table([("class", False), ("rows", True), ("share", True)], rows)
    return _section("target", f'<div class="row">{report.figure(fig, cap)}{table}</div>')


def _missing_section(f: Facts, report: Report) -> str:
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
    fig = plot_missing(shown, [f.missing[c] for c in shown])
    cap = f"Share of rows with no value, for the {len(shown)} feature(s) that have missing values"
    if len(with_missing) > len(shown):
        cap += f" (the {len(shown)} highest of {len(with_missing)})"
    cap += "."
    return _section("missingness", f'<div class="row">{report.figure(fig, cap)}{table}</div>')


def _distribution_section(df: pd.DataFrame, f: Facts, report: Report) -> str:
    t = f.target
    shown = f.ranked[:MAX_DISTRIBUTION_FEATURES]
    figures: list[str] = []
    for name in shown:
        s = df[name]
        if f.kinds[name] == "numeric":
            x = as_float(s)
            if not np.isfinite(x).any():
                continue
            if t.task == "regression":
                fig = plot_numeric_vs_target(name, x, t)
                cap = f"{name}: mean {t.name} (line) and its interquartile range per quantile bin."
            else:
                fig, _ = plot_numeric_by_class(name, x, t)
                cap = f"{name}: distribution within each {t.name} class."
        else:
            if t.task == "regression":
                fig = plot_categorical_vs_target(name, s, t)
                cap = f"{name}: mean {t.name} per category."
            else:
                fig = plot_categorical_by_class(name, s, t)
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


def _correlation_section(df: pd.DataFrame, f: Facts, report: Report) -> str:
    numeric = [c for c in f.ranked if f.kinds[c] == "numeric" and f.distinct[c] > 1]
    if len(numeric) < 2:
        return _section(
            "correlations",
            "<p>Fewer than two non-constant numeric features: no correlation matrix.</p>",
        )
    shown = numeric[:MAX_HEATMAP_FEATURES]
    shown = [c for c in f.features if c in set(shown)]
    frame = pd.DataFrame({c: as_float(df[c]) for c in shown})
    corr = frame.corr(method="spearman", min_periods=3)
    fig = plot_correlations(corr)
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
        [f"<code>{_e(a)}</code>", f"<code>{_e(b)}</code>", fixed(v, 2, sign=True)]
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


def _association_section(f: Facts, report: Report) -> str:
    shown = f.ranked[:MAX_BAR_FEATURES]
    fig = plot_associations(shown, [f.mi[c] for c in shown], [f.kinds[c] for c in shown])
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
            row.append(fixed(f.rho.get(c, math.nan), 3, sign=True))
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


def _time_section(ts: pd.Series, f: Facts, report: Report) -> str:
    fig, what = plot_over_time(ts, f.target)
    cap = f"{what[0].upper()}{what[1:]} (top) and labelled rows per {period(ts)[1]} (bottom)."
    return _section("over-time", report.figure(fig, cap, wide=True))


def html_page(title: str, body: str) -> str:
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


def markdown(f: Facts) -> str:
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
        lines += [f"| {k} | {fmt(v)} |" for k, v in t.summary.items()]
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
