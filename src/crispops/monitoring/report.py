"""The monitoring report as a page and as Prometheus gauges.

The page is one self-contained HTML file (plots as embedded PNGs, no scripts, no
external resources), styled like the explore report. The gauges are the textfile
exporter's format (node_exporter's ``--collector.textfile.directory``).
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from crispops.monitoring.drift import binned_shares
from crispops.steps.explore.plots import style

#: At most this many features get a distribution plot (drifted ones first).
MAX_PLOTS = 12

_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d8dee4;--soft:#f6f8fa;--accent:#4C72B0;
 --bad:#b42318;--ok:#1a7f37;--warn:#9a6700}
*{box-sizing:border-box}
body{margin:0;background:var(--soft);color:var(--fg);
 font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1260px;margin:0 auto;padding:24px 20px 40px}
header h1{font-size:24px;margin:0 0 2px}
header p{color:var(--muted);margin:0}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px 20px 18px;
 margin:16px 0}
h2{font-size:18px;margin:0 0 10px;padding-bottom:6px;border-bottom:1px solid var(--line)}
.note{color:var(--muted);font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:10px}
.card{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:8px 12px}
.card .k{color:var(--muted);font-size:11.5px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:18px;font-weight:600;overflow-wrap:anywhere}
.retrain{color:var(--bad)}.clear{color:var(--ok)}.undecided{color:var(--warn)}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border-bottom:1px solid var(--line);padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}
tr.drifted td{color:var(--bad);font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:16px}
figure{margin:0}figure img{max-width:100%;height:auto}
figcaption{color:var(--muted);font-size:12.5px}
footer{color:var(--muted);font-size:12px;margin-top:20px}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(v: Any, digits: int = 4) -> str:
    return "–" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _png(fig: Figure, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _bars(
    labels: list[str],
    reference: list[float],
    window: list[float],
    title: str,
    reference_label: str = "training",
) -> Figure:
    fig = Figure(figsize=(5.2, 2.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(labels))
    ax.bar(x - 0.2, reference, width=0.4, label=reference_label, color="#4C72B0")
    ax.bar(x + 0.2, window, width=0.4, label="window", color="#DD8452")
    ax.set_xticks(x, labels, rotation=45 if len(labels) > 6 else 0, ha="right")
    ax.set_ylabel("share")
    ax.set_title(title)
    ax.legend(loc="best", framealpha=0.85)
    return fig


def _bin_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    out = [f"<{edges[0]:.3g}"]
    out += [f"{a:.3g}–{b:.3g}" for a, b in itertools.pairwise(edges)]
    return [*out, f"≥{edges[-1]:.3g}"]


def _feature_plot(name: str, ref: dict[str, Any], values: pd.Series) -> Figure | None:
    kind = str(ref.get("kind"))
    if kind in {"float", "int"}:
        edges = list(ref.get("bin_edges") or [])
        v = pd.to_numeric(values, errors="coerce").dropna().astype(float).to_numpy()
        if not ref.get("bin_shares") or not len(v):
            return None
        return _bars(_bin_labels(edges), ref["bin_shares"], binned_shares(v, edges), name)
    cats: dict[str, float] = ref.get("categories") or {}
    s = values.dropna().astype(str)
    if not cats or not len(s):
        return None
    shares = s.value_counts(normalize=True)
    top = list(cats)[:12]
    unseen = float(shares[[c for c in shares.index if c not in cats]].sum())
    names, r, w = [*top, "other"], [cats[c] for c in top], [float(shares.get(c, 0.0)) for c in top]
    r.append(max(0.0, 1.0 - sum(r)))
    w.append(max(0.0, 1.0 - sum(w) - unseen))
    if unseen:
        names.append("unseen")
        r.append(0.0)
        w.append(unseen)
    return _bars(names, r, w, name)


def _score_plot(ref: dict[str, Any] | None, scores: pd.Series) -> Figure | None:
    v = pd.to_numeric(scores, errors="coerce").dropna().astype(float).to_numpy()
    if not ref or not ref.get("bin_shares") or not len(v):
        return None
    edges = list(ref["bin_edges"])
    return _bars(_bin_labels(edges), ref["bin_shares"], binned_shares(v, edges), "score", "holdout")


def html_report(
    report: dict[str, Any],
    inputs: pd.DataFrame,
    profile: dict[str, Any],
    predictions: pd.DataFrame,
    score_reference: dict[str, Any] | None = None,
) -> str:
    d = report["decision"]
    verdict, css = {
        True: ("retrain", "retrain"),
        False: ("no retraining", "clear"),
        None: ("no decision", "undecided"),
    }[d["retrain"]]
    w = report["window"]
    p = report["predictions"]
    cards = [
        ("decision", f'<span class="{css}">{verdict}</span>'),
        ("model", _e(report["model_tag"])),
        ("window", _e(f"{w['length']} to {w['end'][:16]}")),
        ("predictions", _e(p["rows"])),
        ("labels joined", _e(report["labels"]["joined"])),
        ("score PSI", _e(_num(p.get("psi"), 3))),
        ("drifted features", _e(f"{report['drifted_share']:.0%}")),
    ]
    body = [
        "<section id='summary'><h2>Summary</h2><div class='cards'>"
        + "".join(
            f"<div class='card'><div class='k'>{k}</div><div class='v'>{v}</div></div>"
            for k, v in cards
        )
        + "</div><ul>"
        + "".join(f"<li>{_e(r)}</li>" for r in d["reasons"])
        + "</ul>"
        + "<p class='note'>checks: "
        + ", ".join(f"{_e(k)} {_e(v)}" for k, v in d.get("checks", {}).items())
        + "</p></section>"
    ]
    rows = []
    for name, f in report["features"].items():
        distance = (
            f"Wasserstein {_num(f.get('wasserstein'), 3)}"
            if "wasserstein" in f
            else f"JS {_num(f.get('js'), 3)}"
        )
        cls = " class='drifted'" if f["drifted"] else ""
        unseen = ", ".join(f.get("unseen") or [])
        rows.append(
            f"<tr{cls}><td>{_e(name)}</td><td>{_num(f['psi'], 3)}</td><td>{_e(distance)}</td>"
            f"<td>{'yes' if f['drifted'] else 'no'}</td><td>{_e(f['rows'])}</td>"
            f"<td>{_e(unseen)}</td></tr>"
        )
    t = report["thresholds"]
    body.append(
        "<section id='features'><h2>Feature drift</h2>"
        f"<p class='note'>Against the champion's training profile; drifted when PSI &gt; "
        f"{t['drift_psi']:g}. Wasserstein is scaled by the training standard deviation; "
        "JS is the Jensen-Shannon distance (base 2).</p>"
        "<table><tr><th>feature</th><th>PSI</th><th>distance</th><th>drifted</th>"
        "<th>rows</th><th>unseen categories</th></tr>" + "".join(rows) + "</table>"
    )
    refs = profile.get("features") or {}
    order = sorted(report["features"], key=lambda n: (not report["features"][n]["drifted"], n))
    figures = []
    with style():
        for name in order[:MAX_PLOTS]:
            fig = _feature_plot(name, refs.get(name, {}), inputs[name])
            if fig is not None:
                figures.append(
                    f"<figure>{_png(fig, f'{name}: training vs window')}"
                    f"<figcaption>{_e(name)}: PSI {_num(report['features'][name]['psi'], 3)}"
                    "</figcaption></figure>"
                )
        score_fig = _score_plot(score_reference, predictions["score"])
        score_html = (
            f"<figure>{_png(score_fig, 'score: holdout vs window')}</figure>"
            if score_fig is not None
            else "<p class='note'>No holdout score distribution to compare.</p>"
        )
    body.append("<div class='grid'>" + "".join(figures) + "</div></section>")
    body.append(
        "<section id='predictions'><h2>Prediction drift</h2>"
        f"<p>Score PSI {_num(p.get('psi'), 3)} (retrain above {t['prediction_psi']:g}); "
        f"mean {_num(p.get('mean'), 3)} against the holdout's "
        f"{_num(p.get('reference_mean'), 3)}. {p['rows']} predictions by this model, "
        f"{p['other_models']} by others in the window.</p>"
        f"{score_html}</section>"
    )
    holdout = report["holdout"]
    metric_rows = "".join(
        f"<tr><td>{_e(k)}</td><td>{_num(v)}</td><td>{_num(holdout.get(k))}</td></tr>"
        for k, v in report["realized"].items()
    )
    body.append(
        "<section id='realized'><h2>Realized metrics</h2>"
        f"<p>{report['labels']['joined']} labels returned for the window's predictions "
        f"(judged from {t['min_labels']}); the champion's metric is "
        f"<b>{_e(holdout['metric'])}</b>, retrain when worse than the holdout's by more "
        f"than {t['metric_drop']:g}.</p>"
        "<table><tr><th>metric</th><th>realized</th><th>holdout</th></tr>"
        + metric_rows
        + "</table></section>"
    )
    body.append(
        "<section id='settings'><h2>Policy</h2><pre>"
        + _e(json.dumps(t, indent=2))
        + "</pre></section>"
    )
    title = f"Monitoring: {report['model_tag']}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<header><h1>{_e(title)}</h1><p>The served model's inputs, scores and realized "
        f"metrics over {_e(w['start'][:16])} to {_e(w['end'][:16])} (UTC), against its "
        "training run.</p></header>"
        + "".join(body)
        + "<footer>Generated by crispops monitor. Self-contained: no scripts, no external "
        "resources.</footer></main></body></html>\n"
    )


def prometheus_text(report: dict[str, Any]) -> str:
    """The report's figures as Prometheus gauges (text exposition format)."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    reg = CollectorRegistry()
    model = report["model_tag"]

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, ("model_tag", *labels), registry=reg)

    psi = gauge("crispops_monitor_feature_psi", "PSI of a feature against training", ("feature",))
    dist = gauge(
        "crispops_monitor_feature_distance",
        "Wasserstein (scaled by the training std) or Jensen-Shannon distance",
        ("feature", "distance"),
    )
    drifted = gauge("crispops_monitor_feature_drifted", "1 when the feature drifted", ("feature",))
    for name, f in report["features"].items():
        psi.labels(model, name).set(f["psi"])
        drifted.labels(model, name).set(1 if f["drifted"] else 0)
        if f.get("wasserstein") is not None:
            dist.labels(model, name, "wasserstein").set(f["wasserstein"])
        if f.get("js") is not None:
            dist.labels(model, name, "jensen_shannon").set(f["js"])
    gauge("crispops_monitor_drifted_share", "Share of features that drifted").labels(model).set(
        report["drifted_share"]
    )
    p = report["predictions"]
    if p.get("psi") is not None:
        gauge("crispops_monitor_prediction_psi", "PSI of the scores against the holdout's").labels(
            model
        ).set(p["psi"])
    gauge("crispops_monitor_predictions", "Predictions in the window").labels(model).set(p["rows"])
    gauge("crispops_monitor_labels", "Labels joined in the window").labels(model).set(
        report["labels"]["joined"]
    )
    realized = gauge("crispops_monitor_realized", "Realized metric on labels", ("metric",))
    for k, v in report["realized"].items():
        realized.labels(model, k).set(v)
    retrain = report["decision"]["retrain"]
    gauge("crispops_monitor_retrain", "1 retrain, 0 no retraining, -1 no decision").labels(
        model
    ).set({True: 1, False: 0, None: -1}[retrain])
    gauge("crispops_monitor_last_run_timestamp_seconds", "When the monitor last ran").labels(
        model
    ).set(pd.Timestamp(report["generated_at"]).timestamp())
    return generate_latest(reg).decode("utf-8")
