"""``python -m bench scale``: the training set and materialization at 100k, 1M and 10M
label rows, through Feast's DuckDB offline store (the default) and through Spark
``local[2]`` (``crispops init --engine spark``), in one run.

For each size it generates a feature source (one row per label row, an entity updated
about 20 times over 180 days) and a label table, writes a Feast repo per engine with
crispops' own templates (SparkSource or FileSource, the rendered feature_store.yaml),
and runs each measurement in a fresh child process:

- training: crispops' ``join_features`` (the ingest step's point-in-time join of every
  label row with the FeatureService, collected into pandas as the steps take it);
- materialize: crispops' ``materialize`` of the whole window into the SQLite online store.

Wall time is the child's, from start to exit (Python, Feast and, for Spark, the JVM's
start included); peak memory is the largest sum of resident sets of the child and all
its descendants (Spark's JVM and Python workers), sampled every 0.2 s. Both engines'
results are compared on a sample: the training set's rows (by label row) and the
online values of sampled entities. Data goes to ``--data`` (default under /tmp), never
into the repository.

Targets (issue 15): the 10M-row training set and materialization complete on Spark with
peak memory at most 8 GiB, and cost from 1M to 10M at most 12x.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3
PEAK_TARGET_GIB = 8.0
GROWTH_TARGET = 12.0
FEATURES = {"amount": "Float64", "count": "Int64", "ratio": "Float64", "segment": "String"}
SAMPLE_ROWS = 2000
SAMPLE_ENTITIES = 300
PROJECT = "scale"
SERVICE = f"{PROJECT}_v1"


# -- sizes and data ------------------------------------------------------------------------
def parse_size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1_000}k"


def generate(n: int, folder: Path, now: datetime) -> None:
    """``n`` feature rows and ``n`` label rows over 180 days, n/20 entities (Parquet,
    microsecond timestamps), written in 1M-row pieces to keep this process small."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    entities = max(n // 20, 50)
    span_us = 180 * 86400 * 1_000_000
    start_us = int((now - timedelta(days=181)).timestamp() * 1_000_000)
    rng = np.random.default_rng(n)
    segments = np.array(["retail", "online", "wholesale", "partner", "staff"])
    feats = pq.ParquetWriter(folder / "features.parquet", _feature_schema())
    labels = pq.ParquetWriter(folder / "labels.parquet", _label_schema())
    try:
        done = 0
        while done < n:
            m = min(1_000_000, n - done)
            ent = rng.integers(0, entities, m)
            ts = start_us + rng.integers(0, span_us, m)
            amount = rng.gamma(2.0, 50.0, m).round(2)
            feats.write_table(
                pa.table(
                    {
                        "entity_id": ent,
                        "event_timestamp": pa.array(ts, pa.timestamp("us", "UTC")),
                        "amount": amount,
                        "count": rng.poisson(12, m),
                        "ratio": rng.random(m).round(4),
                        "segment": segments[rng.integers(0, len(segments), m)],
                    },
                    schema=_feature_schema(),
                )
            )
            lts = start_us + rng.integers(span_us // 10, span_us, m)
            labels.write_table(
                pa.table(
                    {
                        "row_id": np.arange(done, done + m),
                        "entity_id": rng.integers(0, entities, m),
                        "seen_at": pa.array(lts, pa.timestamp("us", "UTC")),
                        "outcome": rng.integers(0, 2, m),
                    },
                    schema=_label_schema(),
                )
            )
            done += m
    finally:
        feats.close()
        labels.close()


def _feature_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("entity_id", pa.int64()),
            ("event_timestamp", pa.timestamp("us", "UTC")),
            ("amount", pa.float64()),
            ("count", pa.int64()),
            ("ratio", pa.float64()),
            ("segment", pa.string()),
        ]
    )


def _label_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("row_id", pa.int64()),
            ("entity_id", pa.int64()),
            ("seen_at", pa.timestamp("us", "UTC")),
            ("outcome", pa.int64()),
        ]
    )


#: spark.driver.memory of the Spark runs (the JVM's heap; ``--driver-memory``).
DRIVER_MEMORY = "3g"


def spark_settings(n: int, driver_memory: str = DRIVER_MEMORY) -> Any:
    from crispops.config import SparkSettings

    return SparkSettings(
        master="local[2]", driver_memory=driver_memory, shuffle_partitions=max(4, n // 500_000)
    )


def write_repo(
    folder: Path, engine: str, n: int, now: datetime, driver_memory: str = DRIVER_MEMORY
) -> Path:
    """A Feast repo over ``folder``'s features.parquet, from crispops' templates."""
    import pandas as pd

    from crispops.project.columns import PreparedData
    from crispops.project.render import names_for, render_features, render_store_yaml

    repo = folder / engine
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "data").mkdir(parents=True)
    os.link(folder / "features.parquet", repo / "data" / "features.parquet")
    names = names_for(PROJECT, "entity_id")
    data = PreparedData(
        features=pd.DataFrame(),
        labels=pd.DataFrame(),
        feature_types=dict(FEATURES),
        entity_type="INT64",
        oldest=pd.Timestamp(now - timedelta(days=181)),
    )
    kind = "spark" if engine == "spark" else "duckdb"
    (repo / names.module).write_text(
        render_features(names, "entity_id", data, "generated data", now, kind)
    )
    for name, text in render_store_yaml(PROJECT, kind, spark_settings(n, driver_memory)).items():
        (repo / name).write_text(text)
    return repo


# -- the measured child ------------------------------------------------------------------
def child_main(op: str, repo: Path, labels: Path, out: Path) -> None:
    """One measurement, in its own process: prints a JSON line of what it did."""
    import warnings

    import pandas as pd

    from crispops.contract import contract_from_store
    from crispops.spark import use_this_python
    from crispops.steps.features import apply, materialize
    from crispops.steps.ingest import join_features

    warnings.simplefilter("ignore")
    use_this_python()
    t0 = time.perf_counter()
    apply(repo)
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    applied = time.perf_counter() - t0
    report: dict[str, Any] = {"apply_s": applied}
    if op == "training":
        contract = contract_from_store(store, SERVICE)
        frame = pd.read_parquet(labels)
        t1 = time.perf_counter()
        df = join_features(store, contract, frame, "seen_at")
        report["op_s"] = time.perf_counter() - t1
        report["rows"] = len(df)
        step = max(len(frame) // SAMPLE_ROWS, 1)
        df[df["row_id"] % step == 0].to_parquet(out, index=False)
    else:
        t1 = time.perf_counter()
        materialize(repo)
        report["op_s"] = time.perf_counter() - t1
        total = max(int(pd.read_parquet(labels, columns=["entity_id"])["entity_id"].max()), 1)
        step = max(total // SAMPLE_ENTITIES, 1)
        keys = [{"entity_id": int(e)} for e in range(0, total + 1, step)]
        refs = [f"{PROJECT}_fv:{f}" for f in FEATURES]
        online = store.get_online_features(features=refs, entity_rows=keys).to_df()
        online.to_parquet(out, index=False)
        report["rows"] = online_entities(repo)
    sys.stdout.write("\nRESULT " + json.dumps(report) + "\n")


def online_entities(repo: Path) -> int:
    """Entities the materialization wrote into the SQLite online store."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(repo / "data" / "online_store.db")) as db:
        table = f"{PROJECT}_{PROJECT}_fv"
        (count,) = db.execute(f"SELECT COUNT(DISTINCT entity_key) FROM {table}").fetchone()
    return int(count)


@dataclass
class Measurement:
    size: int
    op: str
    engine: str
    ok: bool = False
    wall_s: float = math.nan
    op_s: float = math.nan
    peak_gib: float = math.nan
    rows: int = 0
    error: str = ""
    sample: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def kill_tree(pid: int) -> None:
    """SIGKILL a child and every process under it (Spark's JVM and Python workers)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [*proc.children(recursive=True), proc]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def measure(
    size: int, op: str, engine: str, folder: Path, timeout_s: float, limit_gib: float
) -> Measurement:
    """Run one measurement in a child; stop it (and say so) if its process tree grows
    beyond ``limit_gib``, so the machine, shared with others, never runs out of memory."""
    m = Measurement(size, op, engine)
    out = folder / f"sample-{op}-{engine}.parquet"
    out.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "bench.scale",
        "--child",
        op,
        str(folder / engine),
        str(folder / "labels.parquet"),
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    log = (folder / f"log-{op}-{engine}.txt").open("w")
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=log, text=True
    )
    peak = 0
    stop = threading.Event()

    over: list[float] = []

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss(proc.pid))
            if peak > limit_gib * GIB and not over:
                over.append(time.perf_counter() - started)
                kill_tree(proc.pid)
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        stdout, _ = proc.communicate()
        m.error = f"timed out after {timeout_s:.0f} s"
    except BaseException:
        kill_tree(proc.pid)
        raise
    finally:
        stop.set()
        sampler.join()
        log.close()
    m.wall_s = time.perf_counter() - started
    m.peak_gib = peak / GIB
    if over:
        m.error = f"stopped above {limit_gib:g} GiB after {over[0]:.0f} s"
    result = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode == 0 and result and not over:
        data = json.loads(result[len("RESULT ") :])
        m.ok, m.op_s, m.rows = True, data["op_s"], data["rows"]
        m.extra = {"apply_s": data["apply_s"]}
        m.sample = str(out)
    elif not m.error:
        tail = (folder / f"log-{op}-{engine}.txt").read_text(errors="replace")[-600:]
        m.error = f"exit {proc.returncode}: {tail.strip().splitlines()[-1] if tail else ''}"
    return m


def compare(a: Measurement, b: Measurement, op: str) -> str:
    """Rows of the sample where both engines give the same values, e.g. ``2000/2000``."""
    import pandas as pd

    if not (a.ok and b.ok):
        return "-"
    x, y = pd.read_parquet(a.sample), pd.read_parquet(b.sample)
    key = ["row_id"] if op == "training" else ["entity_id"]
    merged = x.merge(y, on=key, suffixes=("_a", "_b"))
    same = pd.Series(True, index=merged.index)
    for f in FEATURES:
        va, vb = merged[f"{f}_a"], merged[f"{f}_b"]
        if va.dtype.kind in "fiu" and vb.dtype.kind in "fiu":
            eq = (va.astype(float) - vb.astype(float)).abs() <= 1e-9 + 1e-9 * vb.abs()
        else:
            eq = va.astype(str) == vb.astype(str)
        same &= eq | (va.isna() & vb.isna())
    return f"{int(same.sum())}/{max(len(x), len(y))}"


# -- the run -------------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        child_main(argv[1], Path(argv[2]), Path(argv[3]), Path(argv[4]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__)
    parser.add_argument("--sizes", default="100k,1M,10M", help="label rows, comma-separated")
    parser.add_argument("--engines", default="duckdb,spark")
    parser.add_argument("--ops", default="training,materialize")
    parser.add_argument("--data", type=Path, default=Path("/tmp/crispops-scale"))
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per child")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument(
        "--driver-memory", default=DRIVER_MEMORY, help="spark.driver.memory (e.g. 3g)"
    )
    parser.add_argument(
        "--memory-limit",
        type=float,
        default=14.0,
        help="GiB: a child whose process tree grows beyond it is stopped and reported",
    )
    args = parser.parse_args(argv)

    from bench._util import consoles, interrupt_on_signals

    interrupt_on_signals()
    out, err = consoles(150)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    engines = [e.strip() for e in args.engines.split(",")]
    ops = [o.strip() for o in args.ops.split(",")]
    if bad := [e for e in engines if e not in {"duckdb", "spark"}]:
        err.print(f"--engines: unknown {', '.join(bad)} (duckdb, spark)")
        return 2
    if bad := [o for o in ops if o not in {"training", "materialize"}]:
        err.print(f"--ops: unknown {', '.join(bad)} (training, materialize)")
        return 2
    now = datetime.now(UTC).replace(microsecond=0)
    results: list[Measurement] = []
    for n in sizes:
        folder = args.data / label(n)
        t = time.perf_counter()
        generate(n, folder, now)
        err.print(f"{label(n)}: data in {folder} ({time.perf_counter() - t:.0f} s)")
        for op in ops:
            for engine in engines:
                write_repo(folder, engine, n, now, args.driver_memory)
                m = measure(n, op, engine, folder, args.timeout, args.memory_limit)
                results.append(m)
                status = "ok" if m.ok else f"FAILED: {m.error}"
                err.print(
                    f"  {op:<11} {engine:<6} {m.wall_s:7.1f} s  peak {m.peak_gib:5.2f} GiB  "
                    f"{m.rows:>10,} rows  {status}"
                )
    return report(results, sizes, ops, engines, out, args.json, args.driver_memory)


def report(
    results: list[Measurement],
    sizes: list[int],
    ops: list[str],
    engines: list[str],
    out: Any,
    json_path: Path | None,
    driver_memory: str = DRIVER_MEMORY,
) -> int:
    from rich.table import Table

    by = {(m.size, m.op, m.engine): m for m in results}
    table = Table(
        title="training set and materialization: DuckDB (default) vs Spark local[2] "
        f"(spark.driver.memory {driver_memory})"
    )
    table.add_column("label rows", justify="right")
    table.add_column("step")
    for engine in engines:
        table.add_column(f"{engine} s", justify="right")
        table.add_column(f"{engine} peak GiB", justify="right")
        table.add_column(f"{engine} rows out", justify="right")
    table.add_column("same values (sample)", justify="right")
    table.caption = (
        "rows out: training-set rows; for materialize, entities in the online store. "
        "s: the child process's wall time (interpreter, Feast, JVM start included)"
    )
    for n in sizes:
        for op in ops:
            row = [label(n), op]
            for engine in engines:
                m = by.get((n, op, engine))
                if m is None:
                    row += ["-", "-", "-"]
                elif m.ok:
                    row += [f"{m.wall_s:.1f}", f"{m.peak_gib:.2f}", f"{m.rows:,}"]
                else:
                    row += [f"failed ({m.error[:40]})", f"{m.peak_gib:.2f}", "-"]
            pair = [by.get((n, op, e)) for e in ("duckdb", "spark")]
            same = compare(pair[0], pair[1], op) if pair[0] and pair[1] else "-"
            row.append(same)
            table.add_row(*row)
    out.print(table)

    held = True
    lines = []
    big = max(sizes)
    if "spark" in engines and big >= 10_000_000:
        for op in ops:
            m = by[(big, op, "spark")]
            ok = m.ok and m.peak_gib <= PEAK_TARGET_GIB
            held &= ok
            lines.append(
                f"{'held' if ok else 'MISSED'}: Spark {op} at {label(big)}: "
                f"{'completed' if m.ok else 'failed'}, peak {m.peak_gib:.2f} GiB "
                f"(target <= {PEAK_TARGET_GIB:g})"
            )
            small = by.get((1_000_000, op, "spark"))
            if small and small.ok and m.ok:
                growth = m.wall_s / small.wall_s
                ok = growth <= GROWTH_TARGET
                held &= ok
                lines.append(
                    f"{'held' if ok else 'MISSED'}: Spark {op} 1M -> {label(big)}: "
                    f"{growth:.1f}x the time (target <= {GROWTH_TARGET:g}x)"
                )
    for n in sizes:
        for op in ops:
            d = by.get((n, op, "duckdb"))
            if d is not None and not d.ok:
                lines.append(f"DuckDB {op} stops at {label(n)}: {d.error}")
    if "duckdb" in engines:
        for op in ops:
            d = by.get((big, op, "duckdb"))
            if d is not None and d.ok:
                lines.append(
                    f"DuckDB {op} at {label(big)}: needs {d.peak_gib:.2f} GiB in one process"
                )
    for line in lines:
        out.print(line)
    if json_path:
        json_path.write_text(json.dumps([asdict(m) for m in results], indent=2))
    return 0 if held else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
