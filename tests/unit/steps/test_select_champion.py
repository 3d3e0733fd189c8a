from __future__ import annotations

import pytest

from crispops.steps.select_champion import best_candidate, gate


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
