"""The explore report as a browser shows it: headless Chromium renders the real file.

Needs Debian's ``chromium`` package. Without it the tests skip, unless
``CRISPOPS_REQUIRE_BROWSER=1`` is set (as CI does), in which case they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crispops.steps.explore import ExploreResult, explore

pytestmark = [pytest.mark.browser, pytest.mark.integration]

TIMEOUT_S = 120
SECTION_HEADINGS = (
    "Overview",
    "Target balance",
    "Missingness",
    "Distributions by label",
    "Correlations",
    "Feature–label relationships",
    "Label over time",
)
CONSOLE_ERROR_MARKERS = ("Uncaught", "ERROR:CONSOLE")


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        reason = "headless Chromium not found (apt-get install chromium)"
        if os.environ.get("CRISPOPS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"CRISPOPS_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return found


def _run_chromium(
    binary: str, profile: Path, url: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # No host name resolves: the report must render with no network at all, and the
        # browser's own background requests go nowhere.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
        url,
    ]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _frame(n: int = 3000, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2023-03-01", tz="UTC")
    driver = rng.normal(size=n)
    gappy = rng.gamma(2.0, 3.0, n)
    gappy[rng.random(n) < 0.3] = np.nan
    plan = rng.choice(["basic", "plus", "pro", "team"], n).astype(object)
    plan[rng.random(n) < 0.05] = None
    cols: dict[str, object] = {
        "account": rng.integers(0, 900, n),
        "seen_at": start + pd.to_timedelta(rng.integers(0, 400 * 86400, n), unit="s"),
        "driver": driver,
        "gappy": gappy,
        "visits": rng.poisson(3.0, n),
        "plan": plan,
        "region": pd.Categorical(rng.choice(["eu", "us", "apac"], n)),
    }
    for i in range(5):
        cols[f"noise_{i}"] = rng.normal(loc=i, scale=1 + i, size=n)
    cols["churned"] = (driver + 0.5 * rng.normal(size=n) > 0.8).astype(int)
    return pd.DataFrame(cols)


@dataclass(frozen=True)
class Rendered:
    result: ExploreResult
    html_path: Path
    dom: str
    stderr: str
    screenshot: Path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    binary = _chromium()
    out = tmp_path_factory.mktemp("explore_browser")
    df = _frame()
    features = [c for c in df.columns if c not in ("account", "seen_at", "churned")]
    result = explore(
        df,
        entity="account",
        timestamp="seen_at",
        label="churned",
        task="binary",
        features=features,
        html_path=out / "report.html",
        markdown_path=out / "summary.md",
        title="Churn exploration",
    )
    url = (out / "report.html").resolve().as_uri()

    dumped = _run_chromium(binary, out / "profile-dom", url, "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]

    shot = out / "shot.png"
    shotted = _run_chromium(
        binary,
        out / "profile-shot",
        url,
        f"--screenshot={shot}",
        "--window-size=1280,4000",
        "--hide-scrollbars",
    )
    assert shotted.returncode == 0, shotted.stderr[-2000:]
    return Rendered(
        result=result,
        html_path=out / "report.html",
        dom=dumped.stdout,
        stderr=dumped.stderr + shotted.stderr,
        screenshot=shot,
    )


def test_rendered_dom_holds_every_plot(rendered: Rendered) -> None:
    dom = rendered.dom
    assert rendered.result.plots >= 10
    assert dom.count("<svg") == rendered.result.plots
    assert dom.count("</svg>") == rendered.result.plots
    assert len(re.findall(r'<figure class="plot[^"]*">\s*<svg', dom)) == rendered.result.plots
    assert "<title>Churn exploration</title>" in dom


def test_rendered_dom_holds_every_section_heading(rendered: Rendered) -> None:
    headings = [h.replace("&amp;", "&") for h in re.findall(r"<h2>(.*?)</h2>", rendered.dom)]
    assert headings == list(SECTION_HEADINGS)


def test_no_console_errors(rendered: Rendered) -> None:
    bad = [
        line
        for line in rendered.stderr.splitlines()
        if any(marker in line for marker in CONSOLE_ERROR_MARKERS)
    ]
    assert bad == []


def test_screenshot_is_a_real_picture(rendered: Rendered) -> None:
    shot = rendered.screenshot
    assert shot.exists()
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL ships with matplotlib
        assert len(set(data[100:5000])) > 50
        return
    with Image.open(shot) as img:
        assert img.size == (1280, 4000)
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 50  # None: more colours than that
        # the plots draw in colour, not just grey text on a white page
        small = rgb.resize((320, 1000))
        saturated = sum(1 for r, g, b in small.getdata() if max(r, g, b) - min(r, g, b) > 60)
        assert saturated > 500


def test_report_stays_small(rendered: Rendered) -> None:
    assert rendered.html_path.stat().st_size < 3_000_000
