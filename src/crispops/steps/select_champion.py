"""select-champion: the best candidate, then a promotion gate.

The gate asks, in order: does the best candidate beat a trivial baseline (scored on
the same holdout) by ``baseline_margin``? Does it reach the absolute floor
``min_score``, if there is one? Only then: does it beat the current champion by the
promotion margin? The first "no" decides, and the verdict says which it was.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass
from typing import Any


class Verdict(enum.StrEnum):
    """What the gate decided."""

    PROMOTED = "promoted"
    KEPT_CHAMPION = "kept_champion"  # the current champion is at least as good
    BELOW_BASELINE = "below_baseline"  # not better than trivial: nothing worth serving
    BELOW_FLOOR = "below_floor"  # short of training.min_score: nothing worth serving


#: Verdicts that mean no candidate of the run was worth serving at all.
NOT_WORTH_SERVING = frozenset({Verdict.BELOW_BASELINE, Verdict.BELOW_FLOOR})


def baseline_name(task: str) -> str:
    """The baseline's row name on a leaderboard: never a valid candidate name (those are
    lower-case identifiers), so it cannot collide with one, nor be chosen."""
    return "baseline (mean)" if task == "regression" else "baseline (prior)"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    challenger: str
    metric: str
    challenger_score: float
    champion_score: float | None
    champion_tag: str | None
    margin: float
    verdict: str  # a Verdict value
    baseline_score: float | None
    baseline_margin: float
    min_score: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def best_candidate(scores: dict[str, float], higher_is_better: bool) -> str:
    """The candidate with the best score; ties go to the first in name order."""
    if not scores:
        raise ValueError("no candidate was evaluated")
    ordered = sorted(scores.items(), key=lambda kv: kv[0])
    pick = max if higher_is_better else min
    return pick(ordered, key=lambda kv: kv[1])[0]


def gate(
    *,
    challenger: str,
    challenger_score: float,
    champion_score: float | None,
    champion_tag: str | None,
    metric: str,
    higher_is_better: bool,
    margin: float,
    baseline_score: float | None = None,
    baseline_margin: float = 0.0,
    min_score: float | None = None,
) -> Decision:
    """Promote only a challenger that beats the baseline by ``baseline_margin``, reaches
    ``min_score`` (in the metric's direction) and, when there is a champion, beats it
    by ``margin``. ``baseline_score`` None skips the baseline check."""

    def decide(verdict: Verdict, reason: str) -> Decision:
        return Decision(
            verdict is Verdict.PROMOTED,
            reason,
            challenger,
            metric,
            challenger_score,
            champion_score,
            champion_tag,
            margin,
            verdict.value,
            baseline_score,
            baseline_margin,
            min_score,
        )

    def better_by(a: float, b: float) -> float:
        return a - b if higher_is_better else b - a

    # Nothing worth serving: say so, with the numbers, and that the champion (if any) stays.
    def refuse(verdict: Verdict, detail: str) -> Decision:
        if champion_tag:
            return decide(verdict, f"champion unchanged: {detail}; {champion_tag} still serves")
        return decide(verdict, f"not promoted: {detail}; there is no champion yet")

    best = f"the best candidate, {challenger},"
    if not math.isfinite(challenger_score):
        return refuse(
            Verdict.BELOW_BASELINE, f"{best} scored {metric} {challenger_score} on the holdout"
        )
    against = ""
    if baseline_score is not None:
        over = better_by(challenger_score, baseline_score)
        if not over > 0 or over < baseline_margin:  # a tie (or NaN) never beats it
            if over > 0:
                how = f"better than the trivial baseline by only {over:.4f}"
            elif over == 0:
                how = "tied with the trivial baseline"
            else:
                how = "worse than the trivial baseline"
            return refuse(
                Verdict.BELOW_BASELINE,
                f"{best} is {how} ({metric} {challenger_score:.4f} vs baseline "
                f"{baseline_score:.4f} on the same holdout; baseline margin {baseline_margin:g})",
            )
        against = f"; baseline {baseline_score:.4f}"
    if min_score is not None and better_by(challenger_score, min_score) < 0:
        bound = "floor" if higher_is_better else "ceiling"
        return refuse(
            Verdict.BELOW_FLOOR,
            f"{best} misses training.min_score ({metric} {challenger_score:.4f} vs the "
            f"{bound} {min_score:g}{against})",
        )
    if champion_score is None:
        return decide(
            Verdict.PROMOTED,
            f"no champion yet: {challenger} becomes champion ({metric} "
            f"{challenger_score:.4f}{against})",
        )
    gain = better_by(challenger_score, champion_score)
    versus = (
        f"{metric} {challenger_score:.4f} vs champion {champion_tag} "
        f"{champion_score:.4f} on the same holdout{against}"
    )
    if gain <= 0:
        word = "ties" if gain == 0 else "is worse than"
        return decide(
            Verdict.KEPT_CHAMPION,
            f"champion unchanged: {challenger} {word} the champion ({versus})",
        )
    if gain < margin:
        return decide(
            Verdict.KEPT_CHAMPION,
            f"champion unchanged: {challenger} is better by {gain:.4f}, less "
            f"than the promotion margin {margin:g} ({versus})",
        )
    return decide(
        Verdict.PROMOTED,
        f"{challenger} replaces the champion: better by {gain:.4f} >= margin {margin:g} ({versus})",
    )
