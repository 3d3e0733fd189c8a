"""Materialization in parallel chunks, written in order: plan, read, write.

The materialization pipeline (pipelines/materialization.py) cuts each feature view's
window (from its watermark in Feast's registry to ``end``) into chunks (:func:`plan`),
reads each chunk from the offline store in a task of its own (:func:`read`: the costly,
memory-heavy part, run in parallel; the latest row per entity in the chunk's window,
through the offline store's ``pull_latest_from_table_or_query`` as Feast's own
materialization does), and then writes the chunks to the online store one view at a
time, oldest chunk first (:func:`write`), recording each chunk in Feast's registry as a
materialization interval right after its rows are written. That leaves the same online
values, intervals, watermark and state as a sequential ``materialize(chunk=...)``.

Why the writes are not parallel (the ordering guard): the SQLite and PostgreSQL online
stores upsert unconditionally (Redis skips a write whose event time is not newer), so
two chunks of one view written at once leave an entity's *older* value online when the
older chunk finishes last. Written oldest first, the newest value is always last.

Where a chunk's completion is recorded, and why there:

- A chunk that has been *read* is recorded in the state directory
  (``<state_dir>/materialization/<view>/<start>--<end>/``: its rows, then ``done.json``
  written last, atomically). A rerun reuses it instead of reading the offline store again
  when the data it was read from is provably the same: the view's definition and a
  content digest of its source files (``Chunk.data``). A source that is not a file (a
  warehouse table) has no such digest: its chunks are always read again, never reused.
- A chunk that has been *written* is recorded in Feast's registry, as Feast records it
  (``apply_materialization``: an interval, the view AVAILABLE_ONLINE). Not the reads: the
  registry's watermark is the latest interval end, where incremental materialization and
  ``features check`` start, so an interval recorded before every older chunk is online
  would make both skip the gap; and a file registry is one file rewritten whole, so
  parallel tasks that each append an interval would lose each other's.

So a run that fails in one chunk's read leaves the other chunks recorded; the next run
plans that run's chunks again as they were (the watermark has not moved), then new ones
up to its own end, reuses the recorded ones, reads the failed one and the new ones, and
writes them all.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crispops.errors import FeatureStoreError
from crispops.io import atomic_write, file_sha256, read_json, update_digest, write_json
from crispops.steps.features import _aware, _store, chunk_windows, first_start, repo_cwd

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

log = logging.getLogger(__name__)

RECORDS = "materialization"
_DONE = "done.json"
_ROWS = "rows.parquet"
_BATCH_ROWS = 50_000  # rows per online write: memory stays bounded inside a chunk too


@dataclass(frozen=True)
class Chunk:
    """One window of one view. ``view == ""`` is the placeholder of an empty plan: a
    ParallelFor over no items does not run (kfp.local fails on it), so a plan with nothing
    to do holds one chunk that reads and writes nothing."""

    view: str
    start: str  # ISO 8601, UTC
    end: str
    index: int  # position among the view's chunks, oldest first
    count: int  # the view's chunks in this plan
    data: str = ""  # digest of the view's definition and source files; "": never reused
    first: str = ""  # the window of the view's plan: its first chunk's start ...
    upto: str = ""  # ... and its last chunk's end

    @property
    def empty(self) -> bool:
        return not self.view

    @property
    def window(self) -> tuple[datetime, datetime]:
        return datetime.fromisoformat(self.start), datetime.fromisoformat(self.end)

    def item(self) -> dict[str, Any]:
        """A ParallelFor item: every value of one type across items (KFP types the
        loop's items from the first one)."""
        return asdict(self)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Chunk:
        try:
            return cls(
                view=str(item["view"]),
                start=str(item["start"]),
                end=str(item["end"]),
                index=int(item["index"]),
                count=int(item["count"]),
                data=str(item.get("data", "")),
                first=str(item.get("first", "")),
                upto=str(item.get("upto", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureStoreError(f"not a materialization chunk: {item!r} ({exc})") from None

    def __str__(self) -> str:
        if self.empty:
            return "nothing to materialize"
        return f"{self.view} chunk {self.index + 1}/{self.count} [{self.start}, {self.end}]"


NOTHING = Chunk(view="", start="", end="", index=0, count=0)


def _iso(moment: datetime) -> str:
    return _aware(moment).astimezone(UTC).isoformat()


def record_dir(state_dir: Path, chunk: Chunk) -> Path:
    """Where a read chunk is recorded: one folder per view and window."""
    lo, hi = (t.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ") for t in chunk.window)
    return state_dir / RECORDS / chunk.view / f"{lo}--{hi}"


def _supported(fv: FeatureView) -> None:
    for attr, what in (
        ("feature_transformation", "a transformation"),
        ("aggregations", "aggregations"),
        ("filter", "a filter"),
    ):
        if getattr(fv, attr, None):
            raise FeatureStoreError(
                f"feature view {fv.name!r} has {what}: the materialization pipeline reads the "
                "offline store's latest rows directly; materialize it with "
                "`crispops features materialize --chunk ...` instead"
            )
    if fv.batch_source is None:
        raise FeatureStoreError(f"feature view {fv.name!r} has no batch source to read")


def source_digest(fv: FeatureView, repo_path: Path) -> str:
    """The view's definition and its source files' contents, digested; "" when the source
    is not a file (no cheap, honest digest of a table that may have changed)."""
    source = fv.batch_source
    path = getattr(source, "path", None)
    if source is None or not path or "://" in str(path):
        return ""
    full = Path(path) if Path(path).is_absolute() else repo_path / path
    if full.is_file():
        files = [full]
    elif full.is_dir():
        files = sorted(p for p in full.rglob("*") if p.is_file())
    else:
        return ""
    h = hashlib.sha256()
    h.update(source.to_proto().SerializeToString(deterministic=True))
    h.update(json.dumps([[f.name, str(f.dtype)] for f in fv.features]).encode())
    h.update(json.dumps(sorted(fv.entities)).encode())
    for p in files:
        h.update(f"{p.relative_to(full) if p != full else p.name}\0{p.stat().st_size}\0".encode())
        update_digest(h, p)
    return h.hexdigest()


@contextlib.contextmanager
def _quiet(repo_path: Path) -> Iterator[None]:
    with (
        warnings.catch_warnings(),
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stderr(devnull),
        repo_cwd(repo_path),
    ):
        warnings.simplefilter("ignore")
        yield


# plan --------------------------------------------------------------------------------
def plan(
    repo_path: Path,
    state_dir: Path,
    chunk: timedelta | None,
    end: datetime | None = None,
    views: list[str] | None = None,
    config_file: str | None = None,
) -> list[Chunk]:
    """Each online view's window, from its watermark (or the start of its TTL) to ``end``
    (default: now), cut into chunks of ``chunk`` (None: one chunk per view).

    When an earlier plan of the view did not finish (its chunks' records are in the state
    directory), its remaining chunks are planned again as they were, up to that plan's
    end, then new chunks from there to ``end``: so the chunks it read are reused, even
    though "now" has moved. Records of chunks that are not in the plan (written since,
    another chunk length) are removed. Never empty: nothing to do is one placeholder
    chunk (:data:`NOTHING`)."""
    repo_path = repo_path.resolve()
    store = _store(repo_path, config_file)
    end = _aware(end or datetime.now(UTC))
    names = views or sorted(v.name for v in store.list_feature_views() if v.online)
    out: list[Chunk] = []

    def split(lo: datetime, hi: datetime) -> list[tuple[datetime, datetime]]:
        if lo >= hi:
            return []
        return [(lo, hi)] if chunk is None else chunk_windows(lo, hi, chunk)

    for name in names:
        fv = store.get_feature_view(name)
        _supported(fv)
        watermark = _aware(fv.most_recent_end_time) if fv.most_recent_end_time else None
        prior = _unfinished(state_dir, name, watermark, end)
        if prior is not None:
            start = watermark or prior[0]
            windows = split(start, prior[1]) + split(prior[1], end)
        else:
            start = watermark or first_start(fv, end)
            windows = split(start, end)
        data = source_digest(fv, repo_path) if windows else ""
        upto = _iso(windows[-1][1]) if windows else ""
        planned = [
            Chunk(name, _iso(lo), _iso(hi), i, len(windows), data, _iso(start), upto)
            for i, (lo, hi) in enumerate(windows)
        ]
        _prune(state_dir, name, {record_dir(state_dir, c) for c in planned})
        out += planned
    return out or [NOTHING]


def _unfinished(
    state_dir: Path, view: str, watermark: datetime | None, end: datetime
) -> tuple[datetime, datetime] | None:
    """The window ``(first, upto)`` of an earlier plan of ``view`` whose read chunks are
    recorded and not all written: the latest one that the watermark falls inside (or
    any, for a view never materialized) and that ends by ``end``."""
    best: tuple[datetime, datetime] | None = None
    folder = state_dir / RECORDS / view
    for done in folder.glob(f"*/{_DONE}") if folder.is_dir() else []:
        try:
            meta = read_json(done)
            first = datetime.fromisoformat(meta["first"])
            upto = datetime.fromisoformat(meta["upto"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        inside = watermark is None or first <= watermark < upto
        if inside and upto <= end and (best is None or upto > best[1]):
            best = (first, upto)
    return best


def _prune(state_dir: Path, view: str, keep: set[Path]) -> None:
    folder = state_dir / RECORDS / view
    if folder.is_dir():
        for record in folder.iterdir():
            if record not in keep:
                shutil.rmtree(record, ignore_errors=True)


# read --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadResult:
    chunk: Chunk
    rows: int
    reused: bool  # True: a recorded read of the same data, not read again


def pull_latest(store: FeatureStore, fv: FeatureView, start: datetime, end: datetime) -> Any:
    """The latest row per entity in ``[start, end]`` from the offline store, as an Arrow
    table in the source's column names: what Feast's materialization reads."""
    from feast.infra.offline_stores.offline_utils import get_offline_store_from_config
    from feast.utils import _get_column_names

    entities = [store.get_entity(e) for e in fv.entities]
    join_keys, features, ts, created = _get_column_names(fv, entities)
    offline = get_offline_store_from_config(store.config.offline_store)
    assert fv.batch_source is not None  # _supported checked it
    job = offline.pull_latest_from_table_or_query(
        config=store.config,
        data_source=fv.batch_source,
        join_key_columns=join_keys,
        feature_name_columns=features,
        timestamp_field=ts,
        created_timestamp_column=created,
        start_date=start,
        end_date=end,
    )
    return job.to_arrow()


def _reusable(record: Path, chunk: Chunk) -> int | None:
    """The recorded chunk's row count when it can stand for a fresh read, else None."""
    if not chunk.data:
        return None
    try:
        done = read_json(record / _DONE)
        same = all(done.get(k) == getattr(chunk, k) for k in ("view", "start", "end", "data"))
        if same and file_sha256(record / _ROWS) == done.get("rows_sha256"):
            return int(done["rows"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _copy(src: Path, dest: Path) -> None:
    shutil.copyfile(src, dest)


def read(
    repo_path: Path,
    state_dir: Path,
    chunk: Chunk,
    out: Path,
    config_file: str | None = None,
) -> ReadResult:
    """Read one chunk into ``out`` (Parquet), then record it in the state directory; a
    chunk recorded from the same data is copied from its record instead."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if chunk.empty:
        out.write_bytes(b"")
        return ReadResult(chunk, 0, reused=False)
    record = record_dir(state_dir, chunk)
    rows = _reusable(record, chunk)
    if rows is not None:
        atomic_write(out, lambda p: _copy(record / _ROWS, p))
        return ReadResult(chunk, rows, reused=True)
    import pyarrow.parquet as pq

    repo_path = repo_path.resolve()
    store = _store(repo_path, config_file)
    fv = store.get_feature_view(chunk.view)
    _supported(fv)
    lo, hi = chunk.window
    with _quiet(repo_path):
        table = pull_latest(store, fv, lo, hi)
    atomic_write(out, lambda p: pq.write_table(table, p))
    _record(record, chunk, out, table.num_rows)
    return ReadResult(chunk, table.num_rows, reused=False)


def _record(record: Path, chunk: Chunk, rows_file: Path, rows: int) -> None:
    """Record a read chunk for reruns; best effort: the rows artifact is what the write
    uses, so a state directory that cannot be written (a pod without the shared volume)
    only costs the reuse, never the run."""
    try:
        shutil.rmtree(record, ignore_errors=True)
        atomic_write(record / _ROWS, lambda p: _copy(rows_file, p))
        done = {**asdict(chunk), "rows": rows, "rows_sha256": file_sha256(record / _ROWS)}
        write_json(record / _DONE, done)
    except OSError as exc:
        log.warning("cannot record %s in %s (%s): a rerun will read it again", chunk, record, exc)


# write -------------------------------------------------------------------------------
@dataclass
class WriteResult:
    views: dict[str, dict[str, Any]] = field(default_factory=dict)  # view -> summary

    def to_dict(self) -> dict[str, Any]:
        return {"views": self.views}


def _materializing(store: FeatureStore, name: str) -> None:
    """Mark the view MATERIALIZING before writing, as Feast's materialize does (a write
    killed part-way leaves it so: Feast serves nothing from it until a run finishes)."""
    from feast.feature_view import FeatureViewState

    fv = store.get_feature_view(name, allow_registry_cache=False)
    state = getattr(fv, "state", FeatureViewState.STATE_UNSPECIFIED)
    if state in (FeatureViewState.STATE_UNSPECIFIED, FeatureViewState.MATERIALIZING):
        return
    if not state.can_transition_to(FeatureViewState.MATERIALIZING):
        raise FeatureStoreError(
            f"feature view {name!r} cannot be materialized from state {state.name}"
        )
    fv.state = FeatureViewState.MATERIALIZING
    store.registry.apply_feature_view(fv, store.project, commit=True)


def _check_contiguous(name: str, chunks: list[Chunk], watermark: datetime | None) -> None:
    counts = {c.count for c in chunks}
    indices = [c.index for c in chunks]
    if len(counts) != 1 or indices != list(range(len(chunks))) or counts != {len(chunks)}:
        raise FeatureStoreError(
            f"feature view {name!r}: chunks {indices} of a plan of {sorted(counts)}: a chunk "
            "is missing; nothing written for this view"
        )
    for a, b in itertools.pairwise(chunks):
        if a.window[1] != b.window[0]:
            raise FeatureStoreError(f"feature view {name!r}: chunks {a} and {b} leave a gap")
    if watermark is not None and _aware(watermark) != chunks[0].window[0]:
        raise FeatureStoreError(
            f"feature view {name!r} was materialized to {watermark} since these chunks were "
            f"planned from {chunks[0].start} (another materialization ran): nothing written "
            "for this view; run the pipeline again"
        )


def write(
    repo_path: Path,
    state_dir: Path,
    chunks: list[tuple[Chunk, Path]],
    config_file: str | None = None,
) -> WriteResult:
    """Write read chunks to the online store, view by view, oldest chunk first, whatever
    order they were read in; record each in Feast's registry right after its rows
    (``apply_materialization``: the interval, the view AVAILABLE_ONLINE), then drop its
    read record. A view whose chunks do not start at its watermark or leave a gap is
    refused before anything of it is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    repo_path = repo_path.resolve()
    result = WriteResult()
    by_view: dict[str, list[tuple[Chunk, Path]]] = {}
    for c, path in chunks:
        if not c.empty:
            by_view.setdefault(c.view, []).append((c, path))
    if not by_view:
        return result
    store = _store(repo_path, config_file)
    for name in sorted(by_view):
        ordered = sorted(by_view[name], key=lambda cp: (cp[0].window[0], cp[0].index))
        fv = store.get_feature_view(name, allow_registry_cache=False)
        _check_contiguous(name, [c for c, _ in ordered], fv.most_recent_end_time)
        rows = 0
        for c, path in ordered:
            _materializing(store, name)
            with _quiet(repo_path):
                for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH_ROWS):
                    frame = pa.Table.from_batches([batch]).to_pandas()
                    store.write_to_online_store(name, frame, allow_registry_cache=False)
                    rows += len(frame)
            lo, hi = c.window
            fv = store.get_feature_view(name, allow_registry_cache=False)
            store.registry.apply_materialization(fv, store.project, lo, hi, commit=True)
            shutil.rmtree(record_dir(state_dir, c), ignore_errors=True)
        first, last = ordered[0][0], ordered[-1][0]
        result.views[name] = {
            "start": first.start,
            "end": last.end,
            "chunks": len(ordered),
            "rows": rows,
        }
    return result
