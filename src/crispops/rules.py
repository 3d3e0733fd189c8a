"""The data rules a run checks, with their default severity and threshold.

One catalogue, read by the settings (so a misspelt rule fails at load, naming the
key) and by the validate step. A rule's severity is what a finding does:

``error``
    blocks the run before anything is trained;
``warn``
    is recorded in the validation report and the run summary; a feature column with
    a ``warn`` finding of a *quality* rule (constant, mostly null) is dropped from
    training, and the finding blocks after all when the current champion used that
    feature (a feature that went dead is an incident, not a property of the data);
``off``
    is not checked.

The rules that keep a run from training at all (the label, the entity keys, the
timestamp, the row count) cannot be relaxed: a setting that tries is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warn", "off"]


@dataclass(frozen=True)
class Rule:
    name: str
    severity: Severity
    text: str
    threshold: float | None = None
    #: The run cannot train when this fails: it may not be set below error.
    fixed: bool = False
    #: A finding on a feature column drops that column from training when it is a warning.
    quality: bool = False


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("required_column", "error", "column is missing", fixed=True),
        Rule("not_nullable", "error", "null value(s) where none are allowed", fixed=True),
        Rule("rows", "error", "too few rows to train and test on", fixed=True),
        Rule("numeric_label", "error", "a regression label must be numeric", fixed=True),
        Rule(
            "at_least_two_classes",
            "error",
            "a classification label needs at least two classes",
            fixed=True,
        ),
        Rule("not_in_future", "error", "timestamp(s) later than now"),
        Rule("unique_entity_timestamp", "error", "row(s) repeat an (entity keys, timestamp) pair"),
        Rule("dtype", "error", "values of the wrong type"),
        Rule("finite", "error", "infinite or NaN value(s)"),
        Rule("no_label_leakage", "error", "reproduces the label"),
        Rule("drift_psi", "error", "drifted from the champion's data profile", threshold=0.25),
        Rule("known_categories", "error", "categories never seen in training"),
        Rule("not_constant", "warn", "holds a single value for every row", quality=True),
        Rule("null_rate", "warn", "too many null values", threshold=0.5, quality=True),
        Rule(
            "dropped_rows",
            "error",
            "label rows the offline store did not return",
            threshold=0.05,
        ),
        Rule(
            "unmatched",
            "error",
            "label rows without any value from a feature view",
            threshold=0.95,
        ),
    )
}

RuleName = Literal[
    "required_column",
    "not_nullable",
    "rows",
    "numeric_label",
    "at_least_two_classes",
    "not_in_future",
    "unique_entity_timestamp",
    "dtype",
    "finite",
    "no_label_leakage",
    "drift_psi",
    "known_categories",
    "not_constant",
    "null_rate",
    "dropped_rows",
    "unmatched",
]


@dataclass(frozen=True)
class Override:
    """A setting for one rule: its severity, its threshold, or both (None: the default)."""

    severity: Severity | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class Policy:
    """Severities and thresholds in force: per column, else per rule, else the default."""

    rules: dict[str, Override]
    columns: dict[str, dict[str, Override]]

    @classmethod
    def default(cls) -> Policy:
        return cls({}, {})

    def _pick(self, rule: str, column: str | None, attr: str) -> object:
        for override in (
            self.columns.get(column or "", {}).get(rule),
            self.rules.get(rule),
        ):
            value = getattr(override, attr, None) if override is not None else None
            if value is not None:
                return value
        return getattr(RULES[rule], attr)

    def severity(self, rule: str, column: str | None = None) -> Severity:
        return self._pick(rule, column, "severity")  # type: ignore[return-value]

    def threshold(self, rule: str, column: str | None = None) -> float:
        value = self._pick(rule, column, "threshold")
        assert isinstance(value, int | float), f"rule {rule} has no threshold"
        return float(value)
