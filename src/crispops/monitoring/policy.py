"""The retraining policy and the ledger of what was acted on.

:func:`decide` reads the figures of one monitoring window against ``[monitoring]``:

- retrain when the share of drifted features exceeds ``drift_share``, the score
  distribution's PSI exceeds ``prediction_psi``, or the realized metric is worse than
  the champion's holdout metric by more than ``metric_drop``;
- a check without enough data (fewer than ``min_rows`` predictions for drift, fewer
  than ``min_labels`` labels for the metric) is not judged: when no check fires and
  one was not judged, the decision is ``None`` ("no decision"), never "all clear";
- within ``cooldown`` of the last retraining acted on, no new one (``False``, with the
  reasons that would have fired).

The ledger is one JSON file under the project's state: one entry per action, keyed
by (model tag, window), so acting twice on the same window does nothing the second
time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crispops.errors import CrispopsError
from crispops.io import read_json, write_json


class LedgerError(CrispopsError, ValueError):
    """The actions ledger cannot be read; the message names the file."""


@dataclass(frozen=True)
class Thresholds:
    drift_share: float
    prediction_psi: float
    metric_drop: float
    min_rows: int
    min_labels: int
    cooldown: timedelta

    @classmethod
    def from_settings(cls, m: Any) -> Thresholds:
        from crispops.config import duration_seconds

        return cls(
            drift_share=m.drift_share,
            prediction_psi=m.prediction_psi,
            metric_drop=m.metric_drop,
            min_rows=m.min_rows,
            min_labels=m.min_labels,
            cooldown=timedelta(seconds=duration_seconds(m.cooldown)),
        )


@dataclass(frozen=True)
class Figures:
    """What the window showed (the policy's inputs)."""

    rows: int
    features: int
    drifted: list[str]
    prediction_psi: float | None
    labels: int
    metric: str
    realized: float | None
    holdout: float | None
    higher_is_better: bool

    @property
    def drifted_share(self) -> float:
        return len(self.drifted) / self.features if self.features else 0.0


@dataclass(frozen=True)
class Decision:
    retrain: bool | None
    reasons: list[str] = field(default_factory=list)
    #: check -> "fired", "ok" or "not judged"
    checks: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(f: Figures, t: Thresholds, last_action: datetime | None, now: datetime) -> Decision:
    fired: list[str] = []
    unjudged: list[str] = []
    held: list[str] = []
    checks: dict[str, str] = {}
    if f.rows < t.min_rows:
        msg = f"too few predictions to judge drift: {f.rows} < min_rows {t.min_rows}"
        unjudged.append(msg)
        checks["feature_drift"] = checks["prediction_drift"] = "not judged"
    else:
        if not f.features:
            unjudged.append("no feature of the champion's profile is in the log")
            checks["feature_drift"] = "not judged"
        elif f.drifted_share > t.drift_share:
            fired.append(
                f"{len(f.drifted)} of {f.features} features drifted "
                f"({f.drifted_share:.0%} > drift_share {t.drift_share:.0%}): "
                + ", ".join(f.drifted)
            )
            checks["feature_drift"] = "fired"
        else:
            held.append(
                f"{len(f.drifted)} of {f.features} features drifted ({f.drifted_share:.0%}, "
                f"at most drift_share {t.drift_share:.0%})"
                + (": " + ", ".join(f.drifted) if f.drifted else "")
            )
            checks["feature_drift"] = "ok"
        if f.prediction_psi is None:
            unjudged.append("no score distribution to compare (no holdout scores stored)")
            checks["prediction_drift"] = "not judged"
        elif f.prediction_psi > t.prediction_psi:
            fired.append(
                f"prediction drift: score PSI {f.prediction_psi:.3f} > prediction_psi "
                f"{t.prediction_psi:g}"
            )
            checks["prediction_drift"] = "fired"
        else:
            held.append(
                f"score PSI {f.prediction_psi:.3f}, at most prediction_psi {t.prediction_psi:g}"
            )
            checks["prediction_drift"] = "ok"
    if f.labels < t.min_labels:
        unjudged.append(
            f"too few labels to judge {f.metric}: {f.labels} < min_labels {t.min_labels}"
        )
        checks["metric"] = "not judged"
    elif f.realized is None or f.holdout is None:
        unjudged.append(f"{f.metric} could not be computed on the labels returned")
        checks["metric"] = "not judged"
    else:
        drop = (f.holdout - f.realized) if f.higher_is_better else (f.realized - f.holdout)
        if drop > t.metric_drop:
            fired.append(
                f"realized {f.metric} {f.realized:.4f} is worse than the holdout's "
                f"{f.holdout:.4f} by {drop:.4f} > metric_drop {t.metric_drop:g}"
            )
            checks["metric"] = "fired"
        else:
            held.append(
                f"realized {f.metric} {f.realized:.4f} against the holdout's {f.holdout:.4f} "
                f"(on {f.labels} labels)"
            )
            checks["metric"] = "ok"
    if fired:
        if last_action is not None and now - last_action < t.cooldown:
            until = (last_action + t.cooldown).isoformat(timespec="seconds")
            return Decision(
                False,
                [
                    *fired,
                    f"cooldown: the last retraining was at "
                    f"{last_action.isoformat(timespec='seconds')}; none before {until}",
                ],
                checks,
            )
        return Decision(True, fired, checks)
    if unjudged:
        return Decision(None, ["no decision: " + r for r in unjudged] + held, checks)
    return Decision(False, ["all clear: every check holds", *held], checks)


# The ledger ---------------------------------------------------------------------------


def action_key(model_tag: str, window: str, end: datetime) -> str:
    """A window is its length and the hour it ends in: two runs of the same window
    within one hour are the same window."""
    hour = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return f"{model_tag}|{window}|{hour.isoformat(timespec='minutes')}"


def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise LedgerError(f"{path}: unreadable actions ledger ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("actions"), list):
        raise LedgerError(f"{path}: the actions ledger is not {{'actions': [...]}}")
    return list(data["actions"])


def find_action(actions: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    return next((a for a in actions if a.get("key") == key), None)


def last_action_time(actions: list[dict[str, Any]]) -> datetime | None:
    times = []
    for a in actions:
        try:
            times.append(datetime.fromisoformat(str(a["at"])))
        except (KeyError, ValueError):
            continue
    return max(times) if times else None


def record_action(path: Path, entry: dict[str, Any]) -> None:
    """Add or replace (by key) one entry; the file is replaced atomically."""
    actions = [a for a in read_ledger(path) if a.get("key") != entry["key"]]
    actions.append(entry)
    write_json(path, {"actions": actions})
