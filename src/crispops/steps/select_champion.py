"""select-champion: the best candidate, then a promotion gate against the champion."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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
) -> Decision:
    """Promote only when there is no champion, or the challenger beats it by ``margin``."""

    def decide(promote: bool, reason: str) -> Decision:
        return Decision(
            promote,
            reason,
            challenger,
            metric,
            challenger_score,
            champion_score,
            champion_tag,
            margin,
        )

    if champion_score is None:
        return decide(True, f"no champion yet: {challenger} becomes champion")
    gain = (
        challenger_score - champion_score if higher_is_better else champion_score - challenger_score
    )
    versus = (
        f"{metric} {challenger_score:.4f} vs champion {champion_tag} "
        f"{champion_score:.4f} on the same holdout"
    )
    if gain <= 0:
        word = "ties" if gain == 0 else "is worse than"
        return decide(False, f"champion unchanged: {challenger} {word} the champion ({versus})")
    if gain < margin:
        return decide(
            False,
            f"champion unchanged: {challenger} is better by {gain:.4f}, less "
            f"than the promotion margin {margin:g} ({versus})",
        )
    return decide(
        True,
        f"{challenger} replaces the champion: better by {gain:.4f} >= margin {margin:g} ({versus})",
    )
