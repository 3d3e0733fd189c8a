"""validate: a pandera schema derived from the feature contract and the label.

Bad data stops the run before any training, with a report that names each
column and rule. A data profile of good data is written for serving and
monitoring, and a stored profile (the champion's) is the reference for drift.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pandera is imported where a schema is built: drift reads psi only
    import pandera.pandas as pa
    from pandera.errors import SchemaErrors

from crispops.contract import FeatureContract
from crispops.rules import RULES, Policy, Severity


@dataclass(frozen=True)
class Problem:
    column: str
    rule: str  # as shown: the rule's name, with its limit where it has one (null_rate<=0.5)
    detail: str
    severity: Severity = "error"

    @property
    def name(self) -> str:
        """The rule's name in crispops.rules (without its limit)."""
        return re.split(r"[<>=]", self.rule, maxsplit=1)[0]


@dataclass
class ValidationReport:
    rows: int
    problems: list[Problem] = field(default_factory=list)
    drift: dict[str, float] = field(default_factory=dict)  # feature -> PSI
    #: Feature columns left out of training: a warning of a quality rule (constant,
    #: mostly null) on a feature the current champion does not use.
    dropped: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warn"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "ok": self.ok,
            "problems": [asdict(p) for p in self.problems],
            "drift_psi": self.drift,
            "dropped": self.dropped,
        }

    def markdown(self) -> str:
        head = (
            "# Data validation: " + ("passed" if self.ok else "FAILED") + f"\n\nRows: {self.rows}\n"
        )
        if self.dropped:
            head += f"\nLeft out of training (warnings): {', '.join(self.dropped)}\n"
        if not self.problems:
            return head
        lines = ["", "| column | rule | severity | detail |", "|---|---|---|---|"]
        lines += [f"| {p.column} | {p.rule} | {p.severity} | {p.detail} |" for p in self.problems]
        return head + "\n".join(lines) + "\n"

    def summary(self) -> str:
        return "; ".join(f"{p.column}: {p.rule} ({p.detail})" for p in self.errors)


@dataclass(frozen=True)
class Rules:
    entity_keys: tuple[str, ...]
    timestamp: str
    label: str
    task: str
    min_rows: int = 200
    policy: Policy = field(default_factory=Policy.default)
    now: datetime | None = None
    #: Inputs of the current champion (None: no champion): a quality finding on one
    #: of them blocks instead of dropping the feature.
    champion_inputs: frozenset[str] | None = None

    def severity(self, rule: str, column: str | None = None) -> Severity:
        return self.policy.severity(rule, column)

    def threshold(self, rule: str, column: str | None = None) -> float:
        return self.policy.threshold(rule, column)


def _numeric(kind: str) -> bool:
    return kind in {"float", "int"}


def build_schema(contract: FeatureContract, rules: Rules) -> pa.DataFrameSchema:
    """The schema every training set must satisfy (rules set to ``off`` are left out)."""
    import pandera.pandas as pa

    now = pd.Timestamp(rules.now or datetime.now(UTC))
    on = rules.severity

    def keep(checks: list[tuple[str, pa.Check]], column: str | None) -> list[pa.Check]:
        return [c for rule, c in checks if on(rule, column) != "off"]

    columns: dict[str, pa.Column] = {
        key: pa.Column(nullable=False, required=True) for key in rules.entity_keys
    }
    columns[rules.timestamp] = pa.Column(
        checks=keep(
            [("not_in_future", pa.Check(lambda s: s <= now, name="not_in_future"))],
            rules.timestamp,
        ),
        nullable=False,
    )
    label_checks: list[tuple[str, pa.Check]] = []
    if rules.task == "regression":
        label_checks.append(
            (
                "numeric_label",
                pa.Check(
                    lambda s: pd.api.types.is_numeric_dtype(s),
                    element_wise=False,
                    name="numeric_label",
                ),
            )
        )
        label_checks.append(
            ("finite", pa.Check(lambda s: np.isfinite(s.astype(float)), name="finite"))
        )
    else:
        label_checks.append(
            (
                "at_least_two_classes",
                pa.Check(
                    lambda s: s.nunique() >= 2, element_wise=False, name="at_least_two_classes"
                ),
            )
        )
    columns[rules.label] = pa.Column(checks=keep(label_checks, rules.label), nullable=False)
    for spec in contract.inputs:
        limit = rules.threshold("null_rate", spec.name)
        checks: list[tuple[str, pa.Check]] = [
            (
                "null_rate",
                pa.Check(
                    lambda s, limit=limit: s.isna().mean() <= limit,
                    element_wise=False,
                    ignore_na=False,  # pandera drops nulls first otherwise: count them
                    name=f"null_rate<={limit:g}",
                ),
            ),
            (
                "not_constant",
                pa.Check(
                    lambda s: s.dropna().nunique() > 1, element_wise=False, name="not_constant"
                ),
            ),
        ]
        if _numeric(spec.kind):
            checks.append(
                (
                    "dtype",
                    pa.Check(
                        lambda s: pd.api.types.is_numeric_dtype(s),
                        element_wise=False,
                        name=f"dtype={spec.kind}",
                    ),
                )
            )
            checks.append(
                (
                    "finite",
                    pa.Check(
                        lambda s: ~np.isinf(pd.to_numeric(s, errors="coerce").astype(float)),
                        name="finite",
                        ignore_na=True,
                    ),
                )
            )
        elif spec.kind == "string":
            checks.append(
                (
                    "dtype",
                    pa.Check(
                        lambda s: s.dropna().map(lambda v: isinstance(v, str)).all(),
                        element_wise=False,
                        name="dtype=string",
                    ),
                )
            )
        columns[spec.name] = pa.Column(checks=keep(checks, spec.name), nullable=True, required=True)
    keys = [*rules.entity_keys, rules.timestamp]
    df_checks = keep(
        [
            (
                "rows",
                pa.Check(
                    lambda df: len(df) >= rules.min_rows,
                    element_wise=False,
                    name=f"rows>={rules.min_rows}",
                ),
            ),
            (
                "unique_entity_timestamp",
                pa.Check(
                    lambda df: ~df.duplicated(keys, keep=False), name="unique_entity_timestamp"
                ),
            ),
        ],
        None,
    )
    return pa.DataFrameSchema(columns, checks=df_checks, strict=False, coerce=False)


def _leaks(feature: pd.Series, label: pd.Series, task: str) -> bool:
    both = pd.DataFrame({"f": feature, "y": label}).dropna()
    if len(both) < 10 or both["f"].nunique() < 2:
        return False
    if (both["f"].astype(str) == both["y"].astype(str)).mean() >= 0.98:
        return True
    if pd.api.types.is_numeric_dtype(both["f"]) and pd.api.types.is_numeric_dtype(both["y"]):
        if task != "regression":
            # a feature that separates the classes perfectly
            groups = both.groupby("y")["f"].agg(["min", "max"]).sort_values("min")
            overlaps = (groups["min"].shift(-1) <= groups["max"]).iloc[:-1]
            return bool(len(groups) >= 2 and not overlaps.any())
        corr = both["f"].astype(float).corr(both["y"].astype(float))
        return bool(corr is not None and abs(corr) >= 0.995)
    return False


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index between two binned distributions."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, 1e-4), max(a, 1e-4)
        total += (a - e) * math.log(a / e)
    return total


def profile(df: pd.DataFrame, contract: FeatureContract, rules: Rules) -> dict[str, Any]:
    """Per-feature statistics: the reference for serving checks and drift."""
    feats: dict[str, Any] = {}
    for spec in contract.inputs:
        s = df[spec.name]
        entry: dict[str, Any] = {"kind": spec.kind, "null_rate": float(s.isna().mean())}
        if _numeric(spec.kind):
            v = pd.to_numeric(s, errors="coerce").dropna().astype(float)
            qs = np.unique(np.quantile(v, np.linspace(0, 1, 11))) if len(v) else np.array([])
            edges = qs[1:-1].tolist()
            counts = (
                np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
                if len(v)
                else np.array([])
            )
            entry.update(
                min=float(v.min()) if len(v) else None,
                max=float(v.max()) if len(v) else None,
                mean=float(v.mean()) if len(v) else None,
                std=float(v.std()) if len(v) else None,
                bin_edges=edges,
                bin_shares=(counts / max(len(v), 1)).tolist(),
                # 0, 5, ..., 100 %: the reference sample for the monitor's Wasserstein.
                quantiles=np.quantile(v, np.linspace(0, 1, 21)).tolist() if len(v) else [],
            )
        else:
            shares = s.dropna().astype(str).value_counts(normalize=True)
            entry["categories"] = {str(k): float(x) for k, x in shares.items()}
        feats[spec.name] = entry
    y = df[rules.label]
    label: dict[str, Any]
    if rules.task == "regression":
        label = {
            "mean": float(y.mean()),
            "std": float(y.std()),
            "min": float(y.min()),
            "max": float(y.max()),
        }
    else:
        label = {
            "classes": {
                str(k): float(v) for k, v in y.value_counts(normalize=True).sort_index().items()
            }
        }
    ts = df[rules.timestamp]
    return {
        "rows": len(df),
        "start": str(ts.min()),
        "end": str(ts.max()),
        "features": feats,
        "label": label,
        "task": rules.task,
    }


def drift(
    df: pd.DataFrame, reference: dict[str, Any], contract: FeatureContract, rules: Rules
) -> tuple[dict[str, float], list[Problem]]:
    """PSI of each numeric feature and unseen categories, against a stored profile."""
    scores: dict[str, float] = {}
    problems: list[Problem] = []
    ref_feats = reference.get("features", {})
    for spec in contract.inputs:
        ref = ref_feats.get(spec.name)
        if ref is None or spec.name not in df:
            continue
        s = df[spec.name]
        if _numeric(spec.kind) and ref.get("bin_shares"):
            v = pd.to_numeric(s, errors="coerce").dropna().astype(float)
            if not len(v) or rules.severity("drift_psi", spec.name) == "off":
                continue
            counts = np.bincount(
                np.searchsorted(ref["bin_edges"], v, side="right"),
                minlength=len(ref["bin_edges"]) + 1,
            )
            score = psi(ref["bin_shares"], (counts / len(v)).tolist())
            scores[spec.name] = round(score, 4)
            limit = rules.threshold("drift_psi", spec.name)
            if score > limit:
                problems.append(
                    Problem(
                        spec.name,
                        f"drift_psi<={limit:g}",
                        f"PSI {score:.3f} against the champion's data profile",
                    )
                )
        elif "categories" in ref and rules.severity("known_categories", spec.name) != "off":
            seen = set(ref["categories"])
            new = sorted(set(s.dropna().astype(str)) - seen)
            if new:
                problems.append(
                    Problem(
                        spec.name,
                        "known_categories",
                        f"categories never seen in training: {', '.join(new[:5])}",
                    )
                )
    return scores, problems


def validate(
    df: pd.DataFrame,
    contract: FeatureContract,
    rules: Rules,
    reference: dict[str, Any] | None = None,
) -> ValidationReport:
    """Check ``df``; return a report (``report.ok`` false when an error-level rule fails).

    Every finding gets its severity from ``rules.policy``. A warning of a quality rule
    on a feature column drops that feature from training, unless the current champion
    uses it: then the finding is an error (the feature went dead).
    """
    report = ValidationReport(rows=len(df))
    if df.empty:
        report.problems.append(Problem("*", f"rows>={rules.min_rows}", "no rows at all"))
        return report
    from pandera.errors import SchemaErrors

    schema = build_schema(contract, rules)
    df = df.reset_index(drop=True)
    keys = [*rules.entity_keys, rules.timestamp]
    found: list[Problem] = []
    try:
        schema.validate(df, lazy=True)
    except SchemaErrors as exc:
        seen: set[tuple[str, str]] = set()
        for case in exc.failure_cases.to_dict("records"):
            column = str(case.get("column") or "*")
            if column in {"None", "nan", "<NA>"}:
                column = "*"
            rule = str(case.get("check"))
            if rule == "column_in_dataframe":
                column, rule = str(case.get("failure_case")), "required_column"
            if rule == "unique_entity_timestamp":
                column = ", ".join(keys)
                case = {"failure_case": int(df.duplicated(keys, keep=False).sum())}
            elif rule.startswith("rows>="):
                column, case = "*", {"failure_case": len(df)}
            key = (column, rule)
            if key in seen:
                continue
            seen.add(key)
            found.append(Problem(column, rule, _describe(case, exc, column, rule)))
    for spec in contract.inputs:
        if (
            spec.name in df
            and rules.label in df
            and spec.name != rules.label
            and rules.severity("no_label_leakage", spec.name) != "off"
            and _leaks(df[spec.name], df[rules.label], rules.task)
        ):
            found.append(
                Problem(spec.name, "no_label_leakage", f"reproduces the label {rules.label!r}")
            )
    if reference is not None:
        report.drift, problems = drift(df, reference, contract, rules)
        found.extend(problems)
    inputs = set(contract.input_names)
    for problem in found:
        if problem.name == "null_rate" and problem.column in df:
            share = float(df[problem.column].isna().mean())
            problem = Problem(problem.column, problem.rule, f"{share:.1%} of the values are null")
        severity = rules.severity(problem.name, problem.column)
        catalogued = RULES.get(problem.name)
        quality = catalogued is not None and catalogued.quality
        if severity == "warn" and quality and problem.column in inputs:
            if rules.champion_inputs is not None and problem.column in rules.champion_inputs:
                severity = "error"
                problem = Problem(
                    problem.column,
                    problem.rule,
                    problem.detail + "; the champion uses this feature: it went dead",
                    severity,
                )
            elif problem.column not in report.dropped:
                report.dropped.append(problem.column)
        report.problems.append(Problem(problem.column, problem.rule, problem.detail, severity))
    return report


def _describe(case: dict[str, Any], exc: SchemaErrors, column: str, rule: str) -> str:
    cases = exc.failure_cases
    same_rule = cases["check"].astype(str) == (
        "column_in_dataframe" if rule == "required_column" else rule
    )
    count = (
        int(same_rule.sum())
        if rule in {"unique_entity_timestamp"}
        else int((same_rule & (cases["column"].astype(str) == column)).sum())
    )
    text = next((r.text for k, r in RULES.items() if rule.startswith(k)), rule)
    value = case.get("failure_case")
    if (
        rule == "required_column"
        or isinstance(value, bool)
        or value is None
        or (isinstance(value, float) and math.isnan(value))
    ):
        return text
    if rule == "unique_entity_timestamp":
        return f"{value} {text}"
    if rule.startswith("rows"):
        return f"{text}: {value}"
    if rule.startswith(("null_rate", "not_constant", "at_least", "numeric_label")):
        return text
    return f"{count} {text}, e.g. {value!r}"
