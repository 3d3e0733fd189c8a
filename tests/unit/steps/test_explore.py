"""Unit tests for the explore step: real reports from small synthetic frames."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crispops.steps.explore import MAX_DISTRIBUTION_FEATURES, ExploreResult, explore

N = 600
NAN_EVERY = 4  # every 4th row of "patchy" is NaN: 25 % missing


def _base(n: int, seed: int) -> tuple[np.random.Generator, dict[str, object]]:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    seconds = rng.integers(0, 300 * 24 * 3600, n)
    cols: dict[str, object] = {
        "eid": rng.integers(0, n // 2, n),
        "event_time": start + pd.to_timedelta(seconds, unit="s"),
    }
    return rng, cols


def binary_frame(n: int = N, seed: int = 7) -> pd.DataFrame:
    """``driver`` decides the label; the rest is noise with known gaps."""
    rng, cols = _base(n, seed)
    driver = rng.normal(size=n)
    patchy = rng.normal(size=n)
    patchy[::NAN_EVERY] = np.nan
    colour = rng.choice(["red", "green", "blue"], n).astype(object)
    colour[::10] = None
    cols |= {
        "driver": driver,
        "noise": rng.uniform(0, 100, n),
        "patchy": patchy,
        "count": rng.integers(0, 5, n),
        "colour": colour,
        "flat": np.full(n, 3.0),
        "target": (driver + 0.3 * rng.normal(size=n) > 0.4).astype(int),
    }
    return pd.DataFrame(cols)


def multiclass_frame(n: int = N, seed: int = 11) -> pd.DataFrame:
    """A string categorical ``segment`` decides the class."""
    rng, cols = _base(n, seed)
    segment = rng.choice(["north", "south", "east", "west"], n).astype(object)
    to_class = {"north": "alpha", "south": "beta", "east": "gamma", "west": "gamma"}
    label = np.array([to_class[s] for s in segment], dtype=object)
    flip = rng.random(n) < 0.1
    label[flip] = rng.choice(["alpha", "beta", "gamma"], int(flip.sum()))
    segment[::15] = None
    cols |= {
        "segment": pd.Categorical(segment),
        "x1": rng.normal(size=n),
        "x2": rng.exponential(size=n),
        "tier": rng.choice(["gold", "silver"], n).astype(object),
        "klass": label,
    }
    return pd.DataFrame(cols)


def regression_frame(n: int = N, seed: int = 13) -> pd.DataFrame:
    """``signal`` drives a continuous target."""
    rng, cols = _base(n, seed)
    signal = rng.normal(size=n)
    other = rng.normal(size=n)
    other[::NAN_EVERY] = np.nan
    cols |= {
        "signal": signal,
        "other": other,
        "kind_of": rng.choice(["a", "b", "c"], n).astype(object),
        "amount": 50.0 + 12.0 * signal + rng.normal(size=n),
    }
    return pd.DataFrame(cols)


def _run(df: pd.DataFrame, out: Path, *, label: str, task: str) -> ExploreResult:
    features = [c for c in df.columns if c not in ("eid", "event_time", label)]
    return explore(
        df,
        entity="eid",
        timestamp="event_time",
        label=label,
        task=task,  # type: ignore[arg-type]
        features=features,
        html_path=out / "report.html",
        markdown_path=out / "summary.md",
    )


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExploreResult, Path]:
    out = tmp_path_factory.mktemp("binary")
    return _run(binary_frame(), out, label="target", task="binary"), out


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExploreResult, Path]:
    out = tmp_path_factory.mktemp("multiclass")
    return _run(multiclass_frame(), out, label="klass", task="multiclass"), out


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExploreResult, Path]:
    out = tmp_path_factory.mktemp("regression")
    return _run(regression_frame(), out, label="amount", task="regression"), out


def _html(out: Path) -> str:
    return (out / "report.html").read_text(encoding="utf-8")


def _markdown(out: Path) -> str:
    return (out / "summary.md").read_text(encoding="utf-8")


# --- files and self-containment ------------------------------------------------------


@pytest.mark.parametrize("case", ["binary", "multiclass", "regression"])
def test_writes_both_files_and_nothing_else(case: str, request: pytest.FixtureRequest) -> None:
    _, out = request.getfixturevalue(case)
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "summary.md"]
    page = _html(out)
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    assert _markdown(out).startswith("# Exploratory data analysis")


@pytest.mark.parametrize("case", ["binary", "multiclass", "regression"])
def test_html_is_self_contained(case: str, request: pytest.FixtureRequest) -> None:
    _, out = request.getfixturevalue(case)
    page = _html(out)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "http://" not in page
    assert "https://" not in page
    assert "<script" not in page.lower()
    assert "<?xml" not in page
    assert "data:" not in page  # no embedded rasters either: every plot is vector SVG
    assert "<!DOCTYPE svg" not in page
    assert "@import" not in page and "url(http" not in page
    # every in-page reference points at an anchor in the page itself
    for target in re.findall(r'href="([^"]*)"', page):
        assert target.startswith("#"), target


@pytest.mark.parametrize(
    ("case", "minimum"),
    # target + missingness + one per feature + correlations + associations + over time
    [("binary", 11), ("multiclass", 7), ("regression", 7)],
)
def test_plot_count_matches_svgs(case: str, minimum: int, request: pytest.FixtureRequest) -> None:
    result, out = request.getfixturevalue(case)
    page = _html(out)
    assert page.count("<svg") == result.plots
    assert result.plots >= minimum
    assert page.count('<figure class="plot') == result.plots
    assert page.count("<figcaption>") >= result.plots


def test_svg_element_ids_are_unique_across_plots(binary: tuple[ExploreResult, Path]) -> None:
    page = _html(binary[1])
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    # every internal reference resolves to an id that exists in the page
    defined = set(ids)
    for ref in re.findall(r'href="#([^"]+)"', page) + re.findall(r"url\(#([^)]+)\)", page):
        assert ref in defined, ref


def test_sections_are_present(binary: tuple[ExploreResult, Path]) -> None:
    page = _html(binary[1])
    for key in (
        "overview",
        "target",
        "missingness",
        "distributions",
        "correlations",
        "associations",
        "over-time",
    ):
        assert f'<section id="{key}">' in page
    assert "600" in page and "2024-01-01" in page


# --- numbers --------------------------------------------------------------------------


def test_binary_result_numbers(binary: tuple[ExploreResult, Path]) -> None:
    result, _ = binary
    df = binary_frame()
    assert result.n_rows == N
    assert result.n_features == 6
    assert result.missing["patchy"] == pytest.approx(1 / NAN_EVERY)
    assert result.missing["colour"] == pytest.approx(0.1)
    assert result.missing["driver"] == 0.0
    shares = df["target"].value_counts(normalize=True)
    assert result.label_summary == pytest.approx({"0": shares[0], "1": shares[1]})
    assert sum(result.label_summary.values()) == pytest.approx(1.0)


def test_top_association_is_the_driver(binary: tuple[ExploreResult, Path]) -> None:
    result, _ = binary
    names = [name for name, _ in result.top_associations]
    scores = [score for _, score in result.top_associations]
    assert names[0] == "driver"
    assert scores == sorted(scores, reverse=True)
    assert sorted(names) == sorted(["driver", "noise", "patchy", "count", "colour", "flat"])
    assert scores[0] > 3 * scores[1]
    assert dict(result.top_associations)["flat"] == pytest.approx(0.0, abs=1e-9)


def test_multiclass_top_association_is_the_string_categorical(
    multiclass: tuple[ExploreResult, Path],
) -> None:
    result, out = multiclass
    assert result.top_associations[0][0] == "segment"
    assert set(result.label_summary) == {"alpha", "beta", "gamma"}
    assert result.missing["segment"] == pytest.approx(1 / 15, abs=1e-9)
    md = _markdown(out)
    for cls in ("alpha", "beta", "gamma"):
        assert f"| {cls} |" in md


def test_regression_summary_and_top_association(regression: tuple[ExploreResult, Path]) -> None:
    result, out = regression
    y = regression_frame()["amount"]
    assert result.top_associations[0][0] == "signal"
    assert result.label_summary["mean"] == pytest.approx(float(y.mean()))
    assert result.label_summary["std"] == pytest.approx(float(y.std()))
    assert result.label_summary["min"] == pytest.approx(float(y.min()))
    assert result.label_summary["max"] == pytest.approx(float(y.max()))
    assert result.missing["other"] == pytest.approx(1 / NAN_EVERY)
    md = _markdown(out)
    assert "| mean |" in md and "regression" in md


def test_markdown_holds_the_numbers(binary: tuple[ExploreResult, Path]) -> None:
    result, out = binary
    md = _markdown(out)
    assert f"**{N:,} rows**" in md
    for cls, share in result.label_summary.items():
        assert f"| {cls} |" in md
        assert f"{share:.1%}" in md
    top_name, top_score = result.top_associations[0]
    assert f"| 1 | {top_name} |" in md
    assert f"{top_score:.4f}" in md
    # more than 20 % missing: patchy (25 %) yes, colour (10 %) no
    assert "- patchy: 25.0%" in md
    assert "- colour:" not in md
    assert "## Constant features" in md and "- flat" in md
    assert "2024-01-01" in md
    # the top-5 table has exactly five data rows
    assert len(re.findall(r"^\| [1-5] \| \w+ \| (?:numeric|categorical) \| ", md, re.M)) == 5


def test_input_frame_is_not_modified(tmp_path: Path) -> None:
    df = binary_frame(n=120)
    before = df.copy(deep=True)
    _run(df, tmp_path, label="target", task="binary")
    pd.testing.assert_frame_equal(df, before)


def test_overwrites_atomically_without_leftovers(tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text("old", encoding="utf-8")
    _run(binary_frame(n=120), tmp_path, label="target", task="binary")
    assert _html(tmp_path) != "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "summary.md"]


def test_distributions_are_capped_and_say_so(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 150
    df = binary_frame(n=n)
    extra = {f"extra_{i:02d}": rng.normal(size=n) for i in range(MAX_DISTRIBUTION_FEATURES)}
    df = pd.concat([df, pd.DataFrame(extra)], axis=1)
    result = _run(df, tmp_path, label="target", task="binary")
    total = result.n_features
    assert total == 6 + MAX_DISTRIBUTION_FEATURES
    page = _html(tmp_path)
    assert f"Showing {MAX_DISTRIBUTION_FEATURES} of {total} features" in page
    # target, missingness, capped distributions, correlations, associations, over time
    assert result.plots == 5 + MAX_DISTRIBUTION_FEATURES
    assert page.count("<svg") == result.plots


def test_markup_in_names_is_escaped(tmp_path: Path) -> None:
    df = binary_frame(n=120).rename(columns={"noise": "<b>$cost</b>"})
    df["colour"] = df["colour"].replace({"red": "<svg onload=x>"})
    result = _run(df, tmp_path, label="target", task="binary")
    page = _html(tmp_path)
    assert "&lt;b&gt;$cost&lt;/b&gt;" in page
    assert "<b>$cost</b>" not in page
    assert page.count("<svg") == result.plots


def test_naive_timestamps_are_taken_as_utc(tmp_path: Path) -> None:
    df = binary_frame(n=120)
    df["event_time"] = df["event_time"].dt.tz_localize(None)
    result = _run(df, tmp_path, label="target", task="binary")
    assert result.n_rows == 120


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["entity", "timestamp", "label", "feature"])
def test_missing_column_raises_naming_it(role: str, tmp_path: Path) -> None:
    df = binary_frame(n=50)
    kwargs: dict[str, object] = {
        "entity": "eid",
        "timestamp": "event_time",
        "label": "target",
        "features": ["driver", "noise"],
    }
    if role == "feature":
        kwargs["features"] = ["driver", "no_such_column"]
    else:
        kwargs[role] = "no_such_column"
    with pytest.raises(ValueError, match="no_such_column"):
        explore(
            df,
            task="binary",
            html_path=tmp_path / "r.html",
            markdown_path=tmp_path / "s.md",
            **kwargs,  # type: ignore[arg-type]
        )
    assert not any(tmp_path.iterdir())


def test_empty_frame_raises(tmp_path: Path) -> None:
    df = binary_frame(n=50).iloc[0:0]
    with pytest.raises(ValueError, match="empty"):
        _run(df, tmp_path, label="target", task="binary")
    assert not any(tmp_path.iterdir())


def test_non_numeric_regression_label_raises(tmp_path: Path) -> None:
    df = multiclass_frame(n=50)
    with pytest.raises(ValueError, match="klass"):
        _run(df, tmp_path, label="klass", task="regression")


def test_label_among_features_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="target"):
        explore(
            binary_frame(n=50),
            entity="eid",
            timestamp="event_time",
            label="target",
            task="binary",
            features=["driver", "target"],
            html_path=tmp_path / "r.html",
            markdown_path=tmp_path / "s.md",
        )


def test_identifier_like_categorical_is_flagged(tmp_path: Path) -> None:
    n = 200
    df = binary_frame(n=n)
    df["row_key"] = [f"k{i}" for i in range(n)]
    _run(df, tmp_path, label="target", task="binary")
    md = _markdown(tmp_path)
    assert "High-cardinality categoricals (mutual information inflated): row_key." in md
    assert "high cardinality (200)" in _html(tmp_path)


def test_unlabelled_rows_are_left_out_of_label_shares(tmp_path: Path) -> None:
    df = binary_frame(n=200)
    df["target"] = df["target"].astype(float)
    df.loc[df.index[:20], "target"] = np.nan  # int label upcast to float by the gaps
    result = _run(df, tmp_path, label="target", task="binary")
    labelled = df["target"].dropna()
    assert set(result.label_summary) == {"0", "1"}
    assert result.label_summary["1"] == pytest.approx(float((labelled == 1).mean()))
    assert "20 rows have no label." in _markdown(tmp_path)
