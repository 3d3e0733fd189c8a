from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from crispops.project.demo_data import ACTIVITY, APPLICATIONS, PROFILES, generate

END = datetime(2026, 6, 1, tzinfo=UTC)


def test_seeded_and_shaped(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", customers=60, days=120, seed=3, end=END)
    b = generate(tmp_path / "b", customers=60, days=120, seed=3, end=END)
    for name in (PROFILES, ACTIVITY, APPLICATIONS):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "a" / name), pd.read_parquet(tmp_path / "b" / name)
        )
    apps = pd.read_parquet(tmp_path / "a" / APPLICATIONS)
    assert list(apps.columns) == [
        "customer_id",
        "application_ts",
        "requested_amount",
        "term_months",
        "defaulted",
    ]
    assert a.applications == len(apps) > 60
    assert set(apps["defaulted"].unique()) == {0, 1}
    assert 0.05 < a.default_rate < 0.6
    assert apps["application_ts"].max() <= pd.Timestamp(END)
    assert b.customers == 60


def test_different_seed_differs(tmp_path: Path) -> None:
    generate(tmp_path / "a", customers=40, days=100, seed=1, end=END)
    generate(tmp_path / "b", customers=40, days=100, seed=2, end=END)
    a = pd.read_parquet(tmp_path / "a" / PROFILES)
    b = pd.read_parquet(tmp_path / "b" / PROFILES)
    assert not a["credit_score"].equals(b["credit_score"])


def test_defaults_worsen_later_records(tmp_path: Path) -> None:
    """A default leaves marks: that is what makes a latest-value join leak the label."""
    generate(tmp_path, customers=300, days=200, seed=5, end=END)
    apps = pd.read_parquet(tmp_path / APPLICATIONS)
    profiles = pd.read_parquet(tmp_path / PROFILES)
    latest = profiles.sort_values("event_timestamp").groupby("customer_id")["credit_score"].last()
    ever = apps.groupby("customer_id")["defaulted"].max()
    assert latest[ever[ever == 1].index].mean() < latest[ever[ever == 0].index].mean() - 20


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"customers": 5}, "customers"), ({"days": 10}, "days")]
)
def test_sizes_are_checked(tmp_path: Path, kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate(tmp_path, **kwargs)
