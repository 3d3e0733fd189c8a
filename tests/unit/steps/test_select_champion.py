from __future__ import annotations

import pytest

from crispops.steps.select_champion import (
    NOT_WORTH_SERVING,
    Verdict,
    baseline_name,
    best_candidate,
    gate,
)


def decide(challenger: float, champion: float | None, higher: bool = True, margin: float = 0.01):
    return gate(
        challenger="c",
        challenger_score=challenger,
        champion_score=champion,
        champion_tag=None if champion is None else "m:1",
        metric="m",
        higher_is_better=higher,
        margin=margin,
    )


def test_no_champion_yet_promotes() -> None:
    d = decide(0.7, None)
    assert d.promote and "no champion yet" in d.reason


def test_tie_keeps_champion() -> None:
    d = decide(0.8, 0.8)
    assert not d.promote and "ties" in d.reason and "champion unchanged" in d.reason


def test_worse_keeps_champion() -> None:
    d = decide(0.75, 0.8)
    assert not d.promote and "worse" in d.reason


def test_better_by_less_than_margin_keeps_champion() -> None:
    d = decide(0.805, 0.8, margin=0.01)
    assert not d.promote and "less than the promotion margin" in d.reason


def test_better_by_margin_promotes() -> None:
    d = decide(0.82, 0.8, margin=0.01)
    assert d.promote and "replaces the champion" in d.reason


@pytest.mark.parametrize(("challenger", "promote"), [(0.9, True), (0.995, False), (1.1, False)])
def test_lower_is_better_metrics(challenger: float, promote: bool) -> None:
    assert decide(challenger, 1.0, higher=False, margin=0.01).promote is promote


def test_zero_margin_still_needs_a_real_gain() -> None:
    assert not decide(0.8, 0.8, margin=0.0).promote
    assert decide(0.8001, 0.8, margin=0.0).promote


def test_best_candidate_direction_and_ties() -> None:
    assert best_candidate({"a": 0.7, "b": 0.9}, higher_is_better=True) == "b"
    assert best_candidate({"a": 0.7, "b": 0.9}, higher_is_better=False) == "a"
    assert best_candidate({"b": 0.9, "a": 0.9}, higher_is_better=True) == "a"
    with pytest.raises(ValueError):
        best_candidate({}, True)


# -- the baseline and the floor come first --------------------------------------------------
def judged(
    challenger: float,
    *,
    baseline: float | None = 0.5,
    baseline_margin: float = 0.01,
    min_score: float | None = None,
    champion: float | None = None,
    higher: bool = True,
):
    return gate(
        challenger="c",
        challenger_score=challenger,
        champion_score=champion,
        champion_tag=None if champion is None else "m:1",
        metric="m",
        higher_is_better=higher,
        margin=0.005,
        baseline_score=baseline,
        baseline_margin=baseline_margin,
        min_score=min_score,
    )


@pytest.mark.parametrize(
    ("challenger", "words"),
    [
        (0.5, "tied with the trivial baseline"),
        (0.45, "worse than the trivial baseline"),
        (0.505, "better than the trivial baseline by only 0.0050"),
    ],
)
def test_a_candidate_no_better_than_the_baseline_is_never_promoted(
    challenger: float, words: str
) -> None:
    d = judged(challenger)
    assert not d.promote and d.verdict == Verdict.BELOW_BASELINE
    assert words in d.reason
    # the reason names the numbers: candidate score, baseline score and margin
    assert f"m {challenger:.4f} vs baseline 0.5000" in d.reason and "margin 0.01" in d.reason
    assert d.reason.startswith("not promoted:") and "no champion yet" in d.reason


def test_beating_the_baseline_by_the_margin_promotes_a_first_champion() -> None:
    d = judged(0.51)
    assert d.promote and d.verdict == Verdict.PROMOTED
    assert "no champion yet" in d.reason and "baseline 0.5000" in d.reason
    assert (d.baseline_score, d.baseline_margin, d.min_score) == (0.5, 0.01, None)


def test_the_baseline_is_judged_before_the_champion() -> None:
    # the champion is worse still, yet a chance-level candidate does not replace it
    d = judged(0.5, champion=0.4)
    assert not d.promote and d.verdict == Verdict.BELOW_BASELINE
    assert d.reason.startswith("champion unchanged:") and "m:1 still serves" in d.reason


def test_a_zero_baseline_margin_still_needs_a_real_gain() -> None:
    assert judged(0.5, baseline_margin=0.0).verdict == Verdict.BELOW_BASELINE
    assert judged(0.5001, baseline_margin=0.0).promote


@pytest.mark.parametrize(
    ("challenger", "verdict"),
    [(9.0, Verdict.PROMOTED), (9.995, Verdict.BELOW_BASELINE), (10.5, Verdict.BELOW_BASELINE)],
)
def test_lower_is_better_baseline(challenger: float, verdict: Verdict) -> None:
    assert judged(challenger, baseline=10.0, higher=False).verdict == verdict


def test_min_score_is_a_floor_for_higher_is_better() -> None:
    d = judged(0.65, min_score=0.7)
    assert not d.promote and d.verdict == Verdict.BELOW_FLOOR
    assert "training.min_score" in d.reason and "m 0.6500 vs the floor 0.7" in d.reason
    assert "baseline 0.5000" in d.reason
    assert judged(0.7, min_score=0.7).promote  # reaching the floor is enough


def test_min_score_is_a_ceiling_for_lower_is_better() -> None:
    d = judged(6.0, baseline=9.0, min_score=5.0, higher=False)
    assert d.verdict == Verdict.BELOW_FLOOR and "vs the ceiling 5" in d.reason
    assert judged(4.0, baseline=9.0, min_score=5.0, higher=False).promote


def test_the_floor_without_a_baseline_and_the_baseline_before_the_floor() -> None:
    assert judged(0.6, baseline=None, min_score=0.7).verdict == Verdict.BELOW_FLOOR
    assert judged(0.5, min_score=0.7).verdict == Verdict.BELOW_BASELINE


def test_past_the_baseline_and_floor_the_champion_decides() -> None:
    assert judged(0.8, champion=0.8, min_score=0.6).verdict == Verdict.KEPT_CHAMPION
    d = judged(0.9, champion=0.8, min_score=0.6)
    assert d.verdict == Verdict.PROMOTED and "replaces the champion" in d.reason


@pytest.mark.parametrize("score", [float("nan"), float("inf")])
def test_a_non_finite_score_is_never_promoted(score: float) -> None:
    assert judged(score, baseline=None).verdict == Verdict.BELOW_BASELINE


def test_verdicts_and_the_decision_record() -> None:
    assert {v.value for v in NOT_WORTH_SERVING} == {"below_baseline", "below_floor"}
    assert decide(0.7, None).verdict == "promoted"
    assert decide(0.75, 0.8).verdict == "kept_champion"
    record = judged(0.5).to_dict()
    assert record["verdict"] == "below_baseline" and type(record["verdict"]) is str
    assert {"promote", "reason", "baseline_score", "baseline_margin", "min_score"} <= set(record)


def test_the_baseline_name_cannot_be_a_candidate_name() -> None:
    import re

    from crispops.config import Candidate

    pattern = Candidate.model_fields["name"].metadata[0].pattern
    for task in ("binary", "multiclass", "regression"):
        assert not re.match(pattern, baseline_name(task))
