"""The ``explore`` step: a self-contained exploratory data analysis report.

Given the label rows joined to their features, the step writes two files:

- one HTML page with every plot inline as SVG (drawn with matplotlib), inline CSS,
  no JavaScript and no external reference of any kind, so it renders offline and
  inside the Kubeflow Pipelines HTML viewer;
- a short Markdown summary for the KFP Markdown viewer.

Nothing here names a dataset column: entity, timestamp, label, task and features
all come from the arguments.

The package has one job per module, and data flows one way: ``facts`` (input checks
and statistics) <- ``plots`` (matplotlib figures as inline SVG) <- ``html`` (the page
and the Markdown summary) <- this module, which runs them and writes the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from crispops.io import write_text
from crispops.steps.explore.facts import Facts, as_utc, validate
from crispops.steps.explore.html import (
    MAX_DISTRIBUTION_FEATURES,
    Report,
    html_body,
    html_page,
    markdown,
)
from crispops.steps.explore.plots import style

__all__ = ["MAX_DISTRIBUTION_FEATURES", "ExploreResult", "explore"]


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
    entity: str | Sequence[str],
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
    feats = validate(
        df, entity=entity, timestamp=timestamp, label=label, task=task, features=features
    )
    ts = as_utc(df[timestamp], timestamp)
    facts = Facts.build(
        df, ts, feats, title=title, entity=entity, timestamp=timestamp, label=label, task=task
    )

    with style():
        report = Report()
        body = html_body(df, ts, facts, report)
    page = html_page(title, body)

    write_text(Path(html_path), page)
    write_text(Path(markdown_path), markdown(facts))

    return ExploreResult(
        n_rows=len(df),
        n_features=len(feats),
        plots=report.plots,
        label_summary=facts.target.summary,
        missing=facts.missing,
        top_associations=[(f, facts.mi[f]) for f in facts.ranked],
    )
