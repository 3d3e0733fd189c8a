"""The cases behind ``python -m bench reliability`` (issue 7): each one tries a fault,
records what happened as a :class:`Row` with measured figures, and says whether it holds.

The scenarios are the integration tests' (``tests/integration/test_bad_data.py``,
``test_pipeline.py``, ``test_reliability.py``, ``test_serving_fuzz.py``), with the
corpus, projects, servers and clients they share through ``support``; here they run
once each, in one process, and report figures instead of asserting. A
:class:`Workspace` owns the temporary projects and every server and subprocess a case
starts, and stops them all when it closes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bench._util import hey_binary, quantile, run_hey
from support import projects
from support.online_store import KILLER, REDIS_YAML, view_ends
from support.servers import Server, descendants, kill_tree, reachable, start_session

if TYPE_CHECKING:
    import pandas as pd

    from crispops.orchestration.local import RunResult

ROOT = Path(__file__).resolve().parents[1]

GROUPS = ("data", "promotion", "fuzz", "load", "materialization", "restarts")

#: Requests per fuzzed operation (/predict and /predict_entity), as the fuzz test.
FUZZ_EXAMPLES = 1020
CAPACITY_SECONDS = 8.0
CONNECTIONS = 16
LOAD_SHARE = 0.8  # of the measured capacity
SHARE_BAND = (0.7, 0.9)  # what "about 80%" accepts, as achieved
CALIBRATE_SECONDS = 5.0  # a probe at the target rate, to correct hey's pacing
MAX_QPS_BOOST = 1.5
OVERLOAD_SECONDS = 5.0
OVERLOAD_CONNECTIONS = 400
OVERLOAD_LIMIT = 32  # CRISPOPS_SERVING__MAX_CONCURRENCY of the overloaded server
CALM_REQUESTS = 20
PIPELINE_TIMEOUT_S = 400.0
TRAIN_HEAD_START_S = 1.0  # `crispops run` is killed this long after `train` starts

STUMP = [
    {
        "name": "stump",
        "estimator": "hist_gradient_boosting",
        "search": {"max_iter": [1], "max_depth": [1]},
    }
]

#: What each corpus variant (support/corpus.py) does to the demo data.
CORRUPTIONS = {
    "missing column": "the label column dropped from the applications",
    "wrong dtype": "credit_score as text ('712 pts')",
    "all-null column": "employment_years null everywhere",
    "null labels": "every 7th label null",
    "single-class label": "every label 0",
    "constant feature": "open_credit_lines = 3 everywhere",
    "duplicate rows": "30 (customer, timestamp) rows repeated",
    "future timestamps": "every 50th application dated 2099",
    "empty file": "an applications file with no rows",
    "too few rows": "40 applications only",
    "feature leaks the label": "term_months set to the label",
    "unseen category": "home_ownership 'SHARED_EQUITY' in the newer rows",
    "shifted distribution": "annual_income x 3.5",
}


# -- rows -----------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the table: a case, what was tried, what happened, the figures."""

    group: str
    case: str
    tried: str
    outcome: str = ""
    requests: int | None = None
    server_errors: int | None = None
    p99_ms: float | None = None
    compared: int | None = None
    seconds: float = 0.0
    checks: list[tuple[str, bool]] = field(default_factory=list)
    error: str = ""

    def expect(self, ok: object, what: str) -> bool:
        """Record one condition the case must meet; ``what`` names it when it fails."""
        self.checks.append((what, bool(ok)))
        return bool(ok)

    @property
    def holds(self) -> bool:
        return bool(self.checks) and all(ok for _, ok in self.checks) and not self.error

    @property
    def failed(self) -> list[str]:
        return [what for what, ok in self.checks if not ok]


# -- processes ------------------------------------------------------------------------------
def run_bounded(
    argv: list[str], timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a session of its own, for at most ``timeout`` seconds; whatever
    happens (timeout, Ctrl-C), nothing it started outlives the call."""
    proc = start_session(argv, env, ROOT, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        kill_tree(proc)
        proc.communicate(timeout=10)
        raise
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # children left behind by a killed parent
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@contextlib.contextmanager
def quiet(log: TextIO) -> Iterator[None]:
    """Feast and KFP print progress to stdout/stderr: send it to a log file instead (one
    that stays open: a logging handler created meanwhile keeps writing to it)."""
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
        log.flush()


# -- the workspace --------------------------------------------------------------------------
class Workspace:
    """Temporary projects shared by the cases, the rows so far, and everything started."""

    def __init__(self, root: Path, load_seconds: float, on_row: Callable[[Row], None]) -> None:
        self.root = root
        self.load_seconds = load_seconds
        self.on_row = on_row
        self.rows: list[Row] = []
        self.log_path = root / "bench.log"
        self.log = self.log_path.open("a", encoding="utf-8")  # closed by close()
        self.servers: list[Server] = []
        self._projects: dict[str, Path | BaseException] = {}
        self._n = 0

    # cases
    @contextlib.contextmanager
    def case(self, group: str, name: str, tried: str) -> Iterator[Row]:
        """Time a case; an exception ends it as a row that does not hold (Ctrl-C ends
        the whole run)."""
        row = Row(group, name, tried)
        started = time.monotonic()
        try:
            yield row
        except Exception as exc:
            row.error = f"{type(exc).__name__}: {_clip(str(exc), 300)}"
        except BaseException:
            row.error = "interrupted"
            raise
        finally:
            row.seconds = time.monotonic() - started
            self.rows.append(row)
            self.on_row(row)

    # projects
    def _shared(self, name: str, make: Callable[[], Path]) -> Path:
        got = self._projects.get(name)
        if got is None:
            try:
                got = make()
            except Exception as exc:
                got = exc
            self._projects[name] = got
        if isinstance(got, BaseException):
            raise RuntimeError(f"setting up the {name} project failed: {got}") from got
        return got

    def demo(self) -> Path:
        """The demo project on small data, features applied and materialized."""
        return self._shared("demo", self._make_demo)

    def trained(self) -> Path:
        """A copy of the demo whose pipeline has run once: a champion and its Bento."""
        return self._shared("trained", self._make_trained)

    def _make_demo(self) -> Path:
        with quiet(self.log):
            return projects.make_demo_project(self.root / "demo")

    def _make_trained(self) -> Path:
        project = self.copy(self.demo(), "trained", keep_state=False, materialized=True)
        result = self.train(project)
        if not result.ok:
            raise RuntimeError(f"the first training run failed at {result.failed_step}")
        return project

    def copy(
        self, src: Path, name: str, keep_state: bool = True, materialized: bool = False
    ) -> Path:
        """A private copy of a project: its own registry (never copied: it records its
        online tables' absolute paths) and, with ``materialized``, its own online store."""
        self._n += 1
        dest = self.root / f"{self._n:02d}-{_slug(name)}"
        with quiet(self.log):
            return projects.copy_project(src, dest, keep_state, materialized)

    def discard(self, project: Path) -> None:
        shutil.rmtree(project, ignore_errors=True)

    def train(
        self, project: Path, candidates: list[dict[str, Any]] | None = None, **training: Any
    ) -> RunResult:
        from crispops.orchestration.local import run_training

        try:
            return run_training(projects.fast_settings(project, candidates, **training))
        finally:
            _rehome_log_handlers(self.log)

    # servers
    @contextlib.contextmanager
    def server(self, project: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
        """The champion's Bento under a real ``bentoml serve``, stopped on the way out."""
        from support.servers import serve_bento

        server = serve_bento(project, self.root, env)
        self.servers.append(server)
        try:
            yield server
        finally:
            server.stop()
            self.servers.remove(server)

    def close(self) -> None:
        """Stop every server, then anything else this process started and left running."""
        import psutil

        for server in list(self.servers):
            with contextlib.suppress(Exception):
                server.stop()
        self.servers.clear()
        kids = psutil.Process().children(recursive=True)
        for p in kids:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(kids, timeout=10)
        for logger in [logging.root, *logging.Logger.manager.loggerDict.values()]:
            for handler in list(getattr(logger, "handlers", [])):
                if getattr(handler, "stream", None) is self.log:
                    logger.removeHandler(handler)  # type: ignore[union-attr]
        self.log.close()


def _rehome_log_handlers(stream: TextIO) -> None:
    """A run leaves a root logging handler on the stream that captured its output (closed
    once the run ends): later log records would fail on it. Send them to our log."""
    loggers = [logging.root, *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and type(handler.stream).__name__ == (
                "_ProgressTee"
            ):
                handler.stream = stream  # not setStream: it flushes the closed stream


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


# -- 0. setup ------------------------------------------------------------------------------
#: Groups that need the trained project (materialization needs the demo project only).
NEEDS_CHAMPION = {"data", "promotion", "fuzz", "load", "restarts"}


def setup(ws: Workspace, groups: list[str]) -> None:
    """Build the shared projects first, so their time is not charged to the first case."""
    from crispops.champion import read_champion
    from crispops.config import load_settings

    champion = bool(NEEDS_CHAMPION & set(groups))
    demo = projects.DEMO_DATA
    tried = (
        f"demo data ({demo['customers']} customers, {demo['days']} days), "
        "features applied and materialized"
        + ("; a first training run with the fast candidates" if champion else "")
    )
    with ws.case("setup", "shared projects", tried) as row:
        row.expect(ws.demo().is_dir(), "demo project")
        row.outcome = "demo project ready"
        if champion:
            s = load_settings(ws.trained())
            first = read_champion(s.champion_file)
            row.expect(first is not None, "a first champion")
            if first is not None:
                row.outcome = (
                    f"champion {first.candidate} ({first.metric} {first.score:.3f}), "
                    f"Bento {first.bento_tag}"
                )


# -- 1. bad data ----------------------------------------------------------------------------
def data(ws: Workspace) -> None:
    """Each corpus variant: the run stops at the named step, the report names the column
    and the rule, no Bento is built and the champion is unchanged."""
    from crispops.champion import read_champion
    from crispops.config import load_settings
    from crispops.steps.features import apply
    from support.corpus import VARIANTS

    for variant in VARIANTS:
        what = CORRUPTIONS.get(variant.name, variant.name)
        tried = (
            f"{what}; expect a stop at {variant.stops_at} naming {variant.column} / {variant.rule}"
        )
        with ws.case("data", variant.name, tried) as row:
            project = ws.copy(ws.trained(), f"data-{variant.name}")
            s = load_settings(project)
            before = read_champion(s.champion_file)
            built = projects.bentos(project)
            variant.apply(project)
            with quiet(ws.log):
                apply(project / "feature_repo")
            result = ws.train(project)
            row.expect(before is not None, "a champion before the run")
            row.expect(not result.ok, "the run stopped")
            row.expect(result.failed_step == variant.stops_at, f"stopped at {variant.stops_at}")
            done = result.completed()
            row.expect("train" not in done and "package" not in done, "nothing trained")
            named = ""
            if variant.stops_at == "validate":
                report = result.artifact("validate", "report")
                text = report.read_text() if report else ""
                hits = [
                    ln
                    for ln in text.splitlines()
                    if ln.startswith(f"| {variant.column} |") and variant.rule in ln
                ]
                if m := re.search(r"^Rows: (\d+)", text, re.M):
                    row.compared = int(m.group(1))
                if hits:
                    named = " · ".join(c.strip() for c in hits[0].strip("|").split("|"))
            else:
                log = result.log.read_text(errors="replace")
                hits = [
                    ln for ln in log.splitlines() if variant.column in ln and variant.rule in ln
                ]
                if hits:
                    named = _clip(hits[0].split("Error:")[-1].replace(f"{project}/", ""), 140)
            row.expect(hits, f"report names {variant.column} / {variant.rule}")
            row.expect(read_champion(s.champion_file) == before, "champion unchanged")
            row.expect(projects.bentos(project) == built, "no Bento built")
            row.outcome = f"stopped at {result.failed_step}: {named or '(not named)'}"
            ws.discard(project)


# -- 2. promotion safety --------------------------------------------------------------------
def _gate(decision: dict[str, Any] | None) -> str:
    if not decision:
        return "no decision recorded"
    return str(decision["reason"]).removeprefix("champion unchanged: ")


def promotion(ws: Workspace) -> None:
    """A worse challenger, a tie and a challenger better by less than the margin never
    replace the champion, nor do candidates at chance (below the trivial baseline); a
    crash after select-champion leaves the previous one."""
    from crispops.champion import read_champion
    from crispops.config import load_settings

    def kept(row: Row, project: Path, result: RunResult, before: Any, word: str) -> None:
        s = load_settings(project)
        decision = result.decision
        row.expect(result.ok, "the run completed")
        row.expect(decision is not None and decision["promote"] is False, "gate said no")
        row.expect(decision is not None and word in decision["reason"], f"reason says {word!r}")
        row.expect("package" not in result.completed(), "nothing packaged")
        row.expect(read_champion(s.champion_file) == before, "champion unchanged")
        row.outcome = f"champion unchanged: {_gate(decision)}"

    cases: list[tuple[str, str, str, dict[str, Any], bool]] = [
        (
            "worse challenger",
            "retrain with one candidate: a 1-iteration, depth-1 boosted stump",
            "worse than",
            {"candidates": STUMP},
            False,
        ),
        (
            "tie",
            "retrain the champion's own candidates on the same data",
            "ties",
            {},
            False,
        ),
        (
            "better by less than the margin",
            "champion swapped for a constant model (AUC 0.5); retrain the strong "
            "candidates with promotion_margin 0.5",
            "less than the promotion margin",
            {"promotion_margin": 0.5},
            True,
        ),
    ]
    for name, tried, word, overrides, weaken in cases:
        with ws.case("promotion", name, tried) as row:
            project = ws.copy(ws.trained(), f"promo-{name}")
            s = load_settings(project)
            before = projects.weaken_champion(project) if weaken else read_champion(s.champion_file)
            bentos = projects.bentos(project)
            result = ws.train(project, **overrides)
            kept(row, project, result, before, word)
            row.expect(projects.bentos(project) == bentos, "no Bento built")
            ws.discard(project)

    tried = (
        "label column shuffled (independent of every feature): every candidate at "
        "chance; expect no candidate beating the trivial baseline"
    )
    with ws.case("promotion", "candidates at chance", tried) as row:
        from support.corpus import shuffle_label

        project = ws.copy(ws.trained(), "promo-chance")
        s = load_settings(project)
        before = read_champion(s.champion_file)
        bentos = projects.bentos(project)
        shuffle_label(project)
        result = ws.train(project)
        decision = result.decision
        row.expect(result.ok, "the run completed")
        row.expect(
            decision is not None and decision.get("verdict") == "below_baseline",
            "gate said below the baseline",
        )
        row.expect(
            decision is not None and any(r.get("baseline") for r in decision["leaderboard"]),
            "baseline row on the leaderboard",
        )
        row.expect("package" not in result.completed(), "nothing packaged")
        row.expect(read_champion(s.champion_file) == before, "champion unchanged")
        row.expect(projects.bentos(project) == bentos, "no Bento built")
        row.outcome = f"champion unchanged: {_gate(decision)}"
        ws.discard(project)

    tried = (
        "champion swapped for a constant model so the run promotes; the package step "
        "made to crash (its build directory is a file)"
    )
    with ws.case("promotion", "crash after select-champion", tried) as row:
        project = ws.copy(ws.trained(), "promo-crash")
        s = load_settings(project)
        weak = projects.weaken_champion(project)
        shutil.rmtree(s.state_path / "build", ignore_errors=True)
        (s.state_path / "build").write_text("not a directory")
        result = ws.train(project)
        decision = result.decision
        row.expect(not result.ok, "the run failed")
        row.expect(result.failed_step == "package", "it failed at package")
        row.expect(decision is not None and decision["promote"] is True, "gate said promote")
        row.expect(read_champion(s.champion_file) == weak, "previous champion still serves")
        row.outcome = (
            f"failed at {result.failed_step} after the gate promoted "
            f"{decision['challenger'] if decision else '?'}; previous champion kept"
        )
        ws.discard(project)


# -- 3. request fuzzing ---------------------------------------------------------------------
def fuzz(ws: Workspace) -> None:
    """schemathesis over the served OpenAPI schema: no 5xx, every 4xx names the problem."""
    from support.clients import fuzz as run_fuzz

    tried = (
        f"schemathesis: {FUZZ_EXAMPLES} generated requests (valid and invalid) per "
        "endpoint, /predict and /predict_entity"
    )
    with ws.case("fuzz", "generated requests", tried) as row, ws.server(ws.trained()) as srv:
        with quiet(ws.log):
            seen = run_fuzz(srv.url, FUZZ_EXAMPLES)
        by_status: dict[int, int] = seen["by_status"]
        row.requests = int(seen["requests"])
        row.server_errors = sum(n for code, n in by_status.items() if code >= 500)
        unnamed = len(seen["unnamed"])
        ok = sum(n for code, n in by_status.items() if 200 <= code < 300)
        bad = sum(n for code, n in by_status.items() if 400 <= code < 500)
        row.expect(row.requests >= 2000, ">= 2,000 requests")
        row.expect(row.server_errors == 0, "no 5xx")
        row.expect(unnamed == 0, "every 4xx names the problem")
        row.expect(ok > 0 and bad > 0, "valid and invalid requests both made")
        row.expect(srv.proc.poll() is None, "server alive")
        row.expect("Traceback" not in srv.log.read_text(errors="replace"), "no traceback")
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(by_status.items()))
        row.outcome = f"by status {statuses}; 4xx without the problem named: {unnamed}"
        if seen["server_errors"]:
            row.outcome += f"; first 5xx: {_clip(str(seen['server_errors'][0]), 160)}"


# -- 4. load --------------------------------------------------------------------------------
@dataclass
class HeyCsv:
    """One ``hey -o csv`` run: every answered request's status and latency."""

    seconds: float
    statuses: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return len(self.statuses)

    def count(self, test: Callable[[int], bool]) -> int:
        return sum(1 for s in self.statuses if test(s))

    def pct(self, q: float) -> float:
        return quantile(self.latencies_ms, q)


def hey_csv(
    url: str, body: Path, connections: int, seconds: float, qps: float | None = None
) -> HeyCsv:
    """POST ``body`` for ``seconds``; ``qps`` is hey's ``-q``: per connection. (hey's CSV
    lists answered requests only: transport errors are caught by the server-side count.)"""
    argv = [hey_binary(), "-z", f"{seconds:g}s", "-c", str(connections), "-t", "10"]
    if qps is not None:
        argv += ["-q", f"{qps:.3f}"]
    argv += ["-m", "POST", "-T", "application/json", "-D", str(body), "-o", "csv", url]
    done = run_bounded(argv, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"hey failed ({done.returncode}): {done.stderr[-500:]}")
    out = HeyCsv(seconds=seconds)
    for rec in csv.DictReader(io.StringIO(done.stdout)):
        out.statuses.append(int(rec["status-code"]))
        out.latencies_ms.append(float(rec["response-time"]) * 1000)
    return out


_METRIC = re.compile(r"^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$", re.M)


def served_requests(url: str, endpoint: str = "/predict") -> int:
    """Requests the server answered on ``endpoint``, every status (BentoML's counter sits
    outside the load shedder, so it counts the shed 503s too)."""
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    total = 0.0
    for m in _METRIC.finditer(text):
        if m.group(1) == "bentoml_service_request_total" and f'endpoint="{endpoint}"' in m.group(2):
            total += float(m.group(3))
    return round(total)


def _workers(server: Server) -> set[int]:
    return {p.pid for p in descendants(server.proc.pid)}


def load(ws: Workspace) -> None:
    """Capacity, then ``--load-seconds`` at 80% of it with zero failures; then far above
    it, where the server sheds 503s, recovers and stays up."""
    import httpx

    from support.clients import feature_row

    body = ws.root / "predict-1.json"
    record: dict[str, Any] = {}

    def real_record() -> dict[str, Any]:
        if not record:
            with quiet(ws.log):
                record.update(feature_row(ws.trained()))
            body.write_text(json.dumps({"records": [record]}))
        return record

    seconds = ws.load_seconds
    tried = (
        f"hey -c {CONNECTIONS}: {CAPACITY_SECONDS:g} s flat out for the capacity, then "
        f"{seconds:g} s at {LOAD_SHARE:.0%} of it (-q set by a {CALIBRATE_SECONDS:g} s "
        "probe); single-record POST /predict"
    )
    with ws.case("load", f"{seconds:g} s at {LOAD_SHARE:.0%} capacity", tried) as row:
        real_record()
        with ws.server(ws.trained()) as srv:
            url = srv.url + "/predict"
            run_hey(url, body, CONNECTIONS, 2.0)  # warm-up
            capacity = run_hey(url, body, CONNECTIONS, CAPACITY_SECONDS)
            row.expect(capacity.rps > 0 and capacity.errors == 0, "capacity run without errors")
            target = capacity.rps * LOAD_SHARE
            # hey's -q paces each connection with a ticker that drops the ticks a slow
            # answer overlaps, so it sends less than asked: probe, then scale -q up.
            qps = target / CONNECTIONS
            probe = hey_csv(url, body, CONNECTIONS, CALIBRATE_SECONDS, qps=qps)
            probed = probe.answered / CALIBRATE_SECONDS
            if probed > 0:
                qps *= min(target / probed, MAX_QPS_BOOST)
            workers = _workers(srv)
            before = served_requests(srv.url)
            run = hey_csv(url, body, CONNECTIONS, seconds, qps=qps)
            lost = served_requests(srv.url) - before - run.answered
            row.requests = run.answered
            row.server_errors = run.count(lambda s: s >= 500)
            row.p99_ms = run.pct(0.99)
            non_2xx = run.count(lambda s: not 200 <= s < 300)
            share = run.answered / seconds / capacity.rps if capacity.rps > 0 else math.nan
            row.expect(probe.count(lambda s: not 200 <= s < 300) == 0, "probe without errors")
            row.expect(run.answered > 0, "requests answered")
            row.expect(non_2xx == 0, "zero non-2xx")
            row.expect(lost == 0, "zero transport failures (served = answered)")
            row.expect(SHARE_BAND[0] <= share <= SHARE_BAND[1], "ran at about 80% of capacity")
            row.expect(srv.proc.poll() is None and _workers(srv) == workers, "no worker died")
            row.outcome = (
                f"capacity {capacity.rps:.0f} req/s; ran {run.answered / seconds:.0f} req/s "
                f"= {share:.0%} of it (hey -q {qps:.1f} x {CONNECTIONS}); non-2xx "
                f"{non_2xx}, failed in transport {lost}; p50 {run.pct(0.5):.1f} ms"
            )

    tried = (
        f"hey -c {OVERLOAD_CONNECTIONS} flat out for {OVERLOAD_SECONDS:g} s against a server "
        f"limited to {OVERLOAD_LIMIT} requests in flight; then {CALM_REQUESTS} calm requests"
    )
    with ws.case("load", "overload sheds and recovers", tried) as row:
        env = {"CRISPOPS_SERVING__MAX_CONCURRENCY": str(OVERLOAD_LIMIT)}
        real_record()
        with ws.server(ws.trained(), env) as srv:
            url = srv.url + "/predict"
            before = served_requests(srv.url)
            run = hey_csv(url, body, OVERLOAD_CONNECTIONS, OVERLOAD_SECONDS)
            lost = served_requests(srv.url) - before - run.answered
            shed = run.count(lambda s: s == 503)
            other_5xx = run.count(lambda s: s >= 500 and s != 503)
            with httpx.Client(timeout=10) as client:
                calm = [client.post(url, json={"records": [record]}) for _ in range(CALM_REQUESTS)]
            calm_ok = sum(r.status_code == 200 for r in calm)
            row.requests = run.answered
            row.server_errors = shed + other_5xx
            row.p99_ms = run.pct(0.99)
            row.expect(shed > 0, "503s seen")
            row.expect(other_5xx == 0, "no other 5xx")
            row.expect(calm_ok == CALM_REQUESTS, f"{CALM_REQUESTS} calm requests all 200")
            row.expect(srv.proc.poll() is None, "server alive")
            ok = run.count(lambda s: 200 <= s < 300)
            row.outcome = (
                f"200: {ok}, 503 (shed): {shed}, other 5xx: {other_5xx}, unanswered: "
                f"{max(lost, 0)}; afterwards {calm_ok}/{CALM_REQUESTS} calm requests 200, "
                "server up"
            )


# -- 5. materialization ---------------------------------------------------------------------
def online_snapshot(repo: Path, config: str | None, service: str, entity: str) -> pd.DataFrame:
    """Every entity's online values for the service's materialized views."""
    import pandas as pd
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo), fs_yaml_file=repo / (config or "feature_store.yaml"))
    views = {v.name: v for v in store.list_feature_views()}
    projections = [p for p in store.get_feature_service(service).feature_view_projections]
    refs = [f"{p.name}:{f.name}" for p in projections if p.name in views for f in p.features]
    keys: set[Any] = set()
    for p in projections:
        if p.name in views:
            path = getattr(views[p.name].batch_source, "path", None)
            keys |= set(pd.read_parquet(path, columns=[entity])[entity].tolist())
    rows = [{entity: k} for k in sorted(keys)]
    df = store.get_online_features(features=refs, entity_rows=rows).to_df()
    return df.sort_values(entity, ignore_index=True)


def materialization(ws: Workspace) -> None:
    for store in ("sqlite", "redis"):
        _materialization(ws, store)


def _materialization(ws: Workspace, store: str) -> None:
    """Killed part-way (three ways), then run again: online = offline. The same window
    again (incrementally, and as an explicit replay of the full window): no change."""
    from crispops.steps.features import CheckResult, apply, check, materialize

    tried = (
        "materialization SIGKILLed three times (after the first view; 0.05 s and 0.3 s "
        "in), then run to completion; `features check` on 60 entities"
    )
    second_tried = (
        "materialize again (incremental), then replay the whole window explicitly; "
        "every entity's online values before and after"
    )
    project = ws.root / f"mat-{store}"
    repo = project / "feature_repo"
    config: str | None = "feature_store.redis.yaml" if store == "redis" else None
    first: CheckResult | None = None
    end: Any = None
    try:
        with ws.case("materialization", f"{store}: killed part-way, run again", tried) as row:
            if store == "redis" and not reachable("127.0.0.1", 6379):
                raise RuntimeError("Redis is not answering on 127.0.0.1:6379")
            shutil.copytree(ws.demo(), project, ignore=shutil.ignore_patterns("*.db", ".crispops"))
            if config:
                name = f"crispops_bench_{os.getpid()}_{int(time.time())}"
                (repo / config).write_text(REDIS_YAML.format(project=name))
            with quiet(ws.log):
                apply(repo, config_file=config)
            states, codes = [], []
            for when in ("between-views", "0.05", "0.3"):
                done = run_bounded(
                    [sys.executable, "-c", KILLER, str(repo), config or "", when], 120
                )
                codes.append(done.returncode)
                with quiet(ws.log):
                    states.append(view_ends(repo, config))
            with quiet(ws.log):
                end = materialize(repo, config_file=config).end
                first = check(repo, _service(project)[0], sample=60, config_file=config)
            partial = sorted(v is None for v in states[0].values())
            row.compared = first.compared
            row.expect(all(c == -signal.SIGKILL for c in codes), "every run killed (SIGKILL)")
            row.expect(partial == [False, True], "first kill left one view done, one not")
            row.expect(first.ok, "online = offline latest")
            row.outcome = (
                f"the first kill left {partial.count(False)} of {len(partial)} views "
                f"materialized; after the rerun {len(first.mismatches)} mismatches in "
                f"{first.compared} values ({first.entities} entities)"
            )

        with ws.case("materialization", f"{store}: the same window twice", second_tried) as row:
            if first is None:
                raise RuntimeError("the kill-and-rerun case did not get this far")
            service, entity = _service(project)
            with quiet(ws.log):
                before = online_snapshot(repo, config, service, entity)
                materialize(repo, config_file=config)
                again = check(repo, service, sample=60, config_file=config)
                _replay(repo, config, end)
                after = online_snapshot(repo, config, service, entity)
                replayed = check(repo, service, sample=60, config_file=config)
            cells = int(before.shape[0] * (before.shape[1] - 1))
            row.compared = cells + again.compared + replayed.compared
            changed = _changed_cells(before, after, entity)
            row.expect(changed == 0, "online values unchanged")
            row.expect(again.ok and replayed.ok, "online = offline latest")
            row.expect(again.compared == first.compared, "same values compared")
            row.outcome = (
                f"{changed} of {cells} online values changed ({before.shape[0]} entities); "
                f"checks after each: {len(again.mismatches) + len(replayed.mismatches)} "
                "mismatches"
            )
    finally:
        if config and (repo / config).is_file():
            with quiet(ws.log), contextlib.suppress(Exception):
                _teardown(repo, config)


def _service(project: Path) -> tuple[str, str]:
    from crispops.config import load_settings

    s = load_settings(project)
    return s.feature_store.feature_service, s.data.join_keys[0]  # the demo: one key


def _replay(repo: Path, config: str | None, end: Any) -> None:
    """Materialize the full window up to ``end`` again: Feast upserts every entity's
    latest row once more (Redis skips those whose event time is not newer)."""
    from datetime import datetime

    from feast import FeatureStore

    fs = FeatureStore(repo_path=str(repo), fs_yaml_file=repo / (config or "feature_store.yaml"))
    start = datetime(2000, 1, 1, tzinfo=end.tzinfo)
    fs.materialize(start_date=start, end_date=end)


def _changed_cells(before: pd.DataFrame, after: pd.DataFrame, entity: str) -> int:
    if before.shape != after.shape or list(before.columns) != list(after.columns):
        return -1
    changed = 0
    for col in before.columns:
        if col == entity:
            continue
        a, b = before[col], after[col]
        same = (a == b) | (a.isna() & b.isna())
        changed += int((~same).sum())
    return changed


def _teardown(repo: Path, config: str | None) -> None:
    """Remove the Redis keys this case wrote (the registry lives in the temp dir)."""
    from feast import FeatureStore

    fs = FeatureStore(repo_path=str(repo), fs_yaml_file=repo / (config or "feature_store.yaml"))
    fs.teardown()


# -- 6. restarts ----------------------------------------------------------------------------
def restarts(ws: Workspace) -> None:
    """The model server killed and started again; ``crispops run`` killed mid-pipeline
    and started again."""
    import httpx

    from support.clients import feature_row

    tried = "kill -9 the model server and its workers, then start it again"
    with ws.case("restarts", "model server killed", tried) as row:
        project = ws.trained()
        with ws.server(project) as srv:
            up = httpx.get(srv.url + "/readyz", timeout=5).status_code == 200
            srv.kill(signal.SIGKILL)
            srv.proc.wait(timeout=10)
            try:
                httpx.get(srv.url + "/readyz", timeout=2)
                down = False
            except httpx.HTTPError:
                down = True
        started = time.monotonic()
        with ws.server(project) as again:
            ready_s = time.monotonic() - started
            meta = httpx.get(again.url + "/metadata", timeout=5)
            with quiet(ws.log):
                record = feature_row(project)
            pred = httpx.post(again.url + "/predict", json={"records": [record]}, timeout=10)
        row.expect(up, "answered before the kill")
        row.expect(down, "gone after the kill")
        row.expect(meta.status_code == 200 and meta.json().get("model_tag"), "metadata again")
        row.expect(pred.status_code == 200, "predicts again")
        row.outcome = (
            f"down after kill; ready again {ready_s:.1f} s after the restart; "
            f"/metadata {meta.status_code}, /predict {pred.status_code}"
        )

    tried = (
        f"`crispops run` SIGKILLed (its whole process tree) {TRAIN_HEAD_START_S:g} s after "
        "`train` starts; then run again"
    )
    with ws.case("restarts", "crispops run killed mid-pipeline", tried) as row:
        _killed_run(ws, row)


def _killed_run(ws: Workspace, row: Row) -> None:
    import psutil
    import yaml

    from crispops.champion import read_champion
    from crispops.config import load_settings

    project = ws.copy(ws.demo(), "killed-run", keep_state=False, materialized=True)
    # the small candidates, through the settings' environment override
    env = {**os.environ, "CRISPOPS_TRAINING__CANDIDATES": json.dumps(projects.FAST_CANDIDATES)}
    cli = [sys.executable, "-m", "crispops.cli", "run", "-p", str(project)]
    proc = start_session(cli, env, ROOT, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    tree: list[Any] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            if "> train" in line:
                time.sleep(TRAIN_HEAD_START_S)  # let the train step's processes start
                break
        with contextlib.suppress(psutil.Error):
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    finally:
        kill_tree(proc, timeout=30)
    killed_at = next((ln.strip() for ln in reversed(seen) if ">" in ln), "?")
    survivors = [p.pid for p in tree if _alive(p)]
    s = load_settings(project)
    row.expect(any("> train" in ln for ln in seen), "killed while training")
    row.expect(not survivors, "no process of the killed run left")
    row.expect(read_champion(s.champion_file) is None, "nothing promoted by the killed run")
    again = run_bounded(cli, PIPELINE_TIMEOUT_S, env=env)
    champion = read_champion(s.champion_file)
    row.expect(again.returncode == 0, "the second run completed")
    row.expect(champion is not None, "a champion")
    if champion is not None:
        bento_yaml = s.bentoml_home / "bentos" / champion.bento_tag.replace(":", "/") / "bento.yaml"
        info = yaml.safe_load(bento_yaml.read_text()) if bento_yaml.is_file() else {}
        models = [m.get("tag") for m in info.get("models") or []]
        for svc in info.get("services") or []:
            models += [m.get("tag") for m in svc.get("models") or []]
        runs = sorted(p.name for p in (s.state_path / "runs").iterdir())
        row.expect(Path(champion.model_file).is_file(), "the champion's model file exists")
        row.expect(champion.model_tag in models, "its Bento holds its model")
        row.expect(runs[-1:] == [champion.run_id] and len(runs) == 2, "promoted by the rerun")
    row.outcome = (
        f"killed at `{killed_at}` with {len(tree)} processes; rerun exit {again.returncode}; "
        + (
            f"champion {champion.candidate} ({champion.metric} {champion.score:.3f}), "
            f"Bento holds its model, from the rerun {champion.run_id}"
            if champion
            else "no champion"
        )
    )
    if again.returncode != 0:
        row.outcome += f": {_clip((again.stdout + again.stderr)[-400:], 200)}"


def _alive(p: Any) -> bool:
    import psutil

    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


CASES: dict[str, Callable[[Workspace], None]] = {
    "data": data,
    "promotion": promotion,
    "fuzz": fuzz,
    "load": load,
    "materialization": materialization,
    "restarts": restarts,
}


def fmt_ms(x: float | None) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:.1f}"
