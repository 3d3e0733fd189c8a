"""The loop closing once, on the bundled demo: ``crispops demo-cycle``.

1. serve the champion (a real ``bentoml serve`` process, its prediction log on);
2. the world moves: new loan applications, larger ones, whose defaults follow a moved
   rule (:func:`crispops.project.demo_data.moved_applications`), are scored by the
   service over HTTP;
3. their labels come back through ``POST /feedback``;
4. the service stops (SIGTERM: its log is flushed) and the lender's warehouse records
   the applications with their outcome in the label table, as it would;
5. ``crispops monitor --act`` judges the window: drift, prediction drift, realized
   metric, and retrains when the policy says so; the gate then promotes or keeps.

Each step is reported through ``say``; the CLI prints it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import pandas as pd

from crispops.champion import read_champion
from crispops.config import Settings
from crispops.errors import UserError
from crispops.io import write_frame

Say = Callable[[str], None]

#: Records per request to the service, and per feedback call.
BATCH = 50


@dataclass
class CycleResult:
    champion_before: str
    champion_after: str | None
    requests: int
    answered: int
    failed: int
    labels_accepted: int
    labels_rejected: int
    decision: dict[str, Any] = field(default_factory=dict)
    report: Any = None

    @property
    def replaced(self) -> bool:
        return self.champion_after is not None and self.champion_after != self.champion_before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def served(s: Settings, bento_tag: str, say: Say, timeout: float = 120.0) -> Iterator[str]:
    """A ``bentoml serve`` of ``bento_tag`` on a free local port, ready; its address.
    On leaving, SIGTERM and a wait, so the prediction log's queue is flushed."""
    from crispops.serving.runtime import (
        serve_argv,
        serving_env,
        start_server,
        stop_server,
        wait_ready,
    )

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    errlog: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    argv = serve_argv(bento_tag, "127.0.0.1", port)
    proc = start_server(argv, {**os.environ, **serving_env(s)}, subprocess.DEVNULL, errlog)
    try:
        try:
            wait_ready(proc, url, timeout, "the model server")
        except UserError as exc:
            errlog.seek(0)
            tail = errlog.read().decode(errors="replace").strip().splitlines()[-5:]
            raise UserError(f"{exc}: " + " | ".join(tail)) from None
        say(f"serving {bento_tag} at {url} (pid {proc.pid})")
        yield url
    finally:
        stop_server(proc)
        errlog.close()


def _post(url: str, body: dict[str, Any]) -> Any:
    import httpx

    try:
        resp = httpx.post(url, json=body, timeout=60)
    except httpx.HTTPError as exc:
        raise UserError(f"{url}: {exc}") from None
    if resp.status_code != 200:
        raise UserError(f"{url}: {resp.status_code} {resp.text[:300]}")
    return resp.json()


def send_traffic(url: str, apps: pd.DataFrame, entity: str) -> tuple[list[str | None], int]:
    """Score the applications by entity (/predict_entity); each one's request id (None
    where the service answered with an error) and the count of errors."""
    ids: list[str | None] = []
    failed = 0
    for start in range(0, len(apps), BATCH):
        chunk = apps.iloc[start : start + BATCH]
        records = [
            {
                entity: int(r[entity]),
                "requested_amount": float(r["requested_amount"]),
                "term_months": int(r["term_months"]),
            }
            for _, r in chunk.iterrows()
        ]
        for answer in _post(url + "/predict_entity", {"records": records}):
            if answer.get("error"):
                failed += 1
                ids.append(None)
            else:
                ids.append(answer.get("request_id"))
    return ids, failed


def return_labels(url: str, ids: list[str | None], labels: list[int]) -> tuple[int, int]:
    """POST /feedback for every answered request; (accepted, rejected)."""
    pairs = [(i, y) for i, y in zip(ids, labels, strict=True) if i]
    accepted = rejected = 0
    for start in range(0, len(pairs), BATCH):
        body = {
            "records": [{"request_id": i, "label": int(y)} for i, y in pairs[start : start + BATCH]]
        }
        answer = _post(url + "/feedback", body)
        accepted += int(answer.get("stored", 0))
        rejected += len(answer.get("errors", []))
    return accepted, rejected


def record_outcomes(s: Settings, apps: pd.DataFrame) -> int:
    """Append the applications and their outcomes to the label table (atomically)."""
    path = s.label_source_path
    table = pd.read_parquet(path)
    if list(apps.columns) != list(table.columns):
        raise UserError(
            f"{path}: columns {list(table.columns)} are not the demo's "
            f"{list(apps.columns)}; demo-cycle runs on the bundled demo's tables"
        )
    out = pd.concat([table, apps.astype(table.dtypes.to_dict())], ignore_index=True)
    write_frame(path, out.sort_values(s.data.timestamp, kind="stable", ignore_index=True))
    return len(out)


def run_cycle(
    s: Settings,
    *,
    requests: int,
    seed: int,
    monitor: Callable[[Settings], Any],
    say: Say,
) -> CycleResult:
    """Serve, move the world, take labels back, monitor and act; see the module."""
    from crispops.project.demo_data import moved_applications

    champion = read_champion(s.champion_file)
    if champion is None:
        raise UserError(f"{s.project_dir}: no champion yet; run `crispops demo` first")
    if s.data.join_keys != ["customer_id"]:
        raise UserError(
            f"{s.project_dir}: demo-cycle runs on the bundled demo (customer_id), "
            f"not on entities {', '.join(s.data.join_keys)}"
        )
    say(f"1. champion {champion.model_tag} ({champion.metric} {champion.score:.4f})")
    table = pd.read_parquet(s.label_source_path)
    missing = {s.data.timestamp, "requested_amount"} - set(table.columns)
    if missing:
        raise UserError(
            f"{s.label_source_path}: no {', '.join(sorted(missing))} column; demo-cycle runs "
            "on the bundled demo's tables"
        )
    labels_at = table[s.data.timestamp].max()
    now = datetime.now(UTC)
    since = max(pd.Timestamp(labels_at).to_pydatetime(), now - timedelta(hours=12))
    apps = moved_applications(
        s.label_source_path.parent, requests, since=since, until=now, seed=seed
    )
    with served(s, champion.bento_tag, say) as url:
        say(
            f"2. the world moves: {len(apps)} applications, median loan "
            f"{apps['requested_amount'].median():,.0f} (was "
            f"{table['requested_amount'].median():,.0f})"
        )
        ids, failed = send_traffic(url, apps, "customer_id")
        say(f"   scored {len(ids) - failed} by /predict_entity, {failed} errors")
        accepted, rejected = return_labels(url, ids, apps[s.data.label].tolist())
        say(
            f"3. labels back: {accepted} accepted by /feedback, {rejected} rejected; "
            f"default rate now {apps[s.data.label].mean():.1%}"
        )
    say("   the service stopped (SIGTERM): its prediction log is flushed")
    rows = record_outcomes(s, apps)
    say(f"4. the warehouse records the outcomes: {rows:,} rows in {s.label_source_path.name}")
    say("5. monitor --act")
    report = monitor(s)
    after = read_champion(s.champion_file)
    return CycleResult(
        champion_before=champion.model_tag,
        champion_after=after.model_tag if after else None,
        requests=len(apps),
        answered=len(ids) - failed,
        failed=failed,
        labels_accepted=accepted,
        labels_rejected=rejected,
        report=report,
    )


__all__ = ["CycleResult", "run_cycle", "served"]
