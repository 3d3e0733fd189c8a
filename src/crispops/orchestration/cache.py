"""The step cache of local runs: an unchanged step's outputs come back without running it.

The seam is kfp.local's own one: ``kfp.local.orchestrator.task_executor`` asks the
shared ``LocalCache`` for a key (``compute_key``), then for the outputs (``get``)
before it starts a task's process, and stores the outputs (``put``) after a
success. :class:`StepCache` replaces that cache for a ``crispops run``, so a hit
costs no process start-up at all. What it does differently from kfp's:

- The key is the component (its name and the command, which embeds the
  component's source), its parameters, a content digest of each input artifact
  (not its URI, which names the run) with its metadata, and the code version
  (crispops' version and a digest of the package's, the components' and the
  pipelines' sources). Ingest also keys on a fingerprint of the data it reads:
  the label file and every file of the feature repo (definitions, registry and the
  offline FileSources inside it, plus the Parquet/CSV files the definitions name
  outside it), each by size, mtime and content digest. A feature repo with a
  non-file offline source (a warehouse table) is never served from cache: there
  is no cheap, honest fingerprint of a table that may have grown. validate and
  select_champion also key on the current champion (they compare with it).
- package and the materialization pipeline's tasks are never cached: package writes
  outside its outputs (the model store, the champion pointer); plan-chunks reads the
  registry's watermarks and the clock, read-chunk the offline store, write-chunks
  writes the online store and the registry.
- Outputs are copied into the entry, so an entry outlives its run's folder; a
  hit copies them into the new run's folder (``cached-<key>/<task>/<output>``), so
  the run's folder holds every output as after a real run.
- Entries are written to a temporary folder and renamed into place; an entry that
  cannot be read whole is a miss, never an error. The total size is kept under
  ``cache.max_mb`` by deleting the least recently used entries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp.local.cache import LocalCache

from crispops import __version__
from crispops.config import Settings
from crispops.io import file_sha256

log = logging.getLogger(__name__)

#: Components that write outside their outputs, or read what their inputs do not name
#: (the registry's watermarks, the offline store): always run. A read chunk is reused
#: only through its own record, which checks the data it was read from
#: (crispops.steps.chunks).
UNCACHED = frozenset({"comp-package", "comp-plan-chunks", "comp-read-chunk", "comp-write-chunks"})
#: Components that read the current champion.
READS_CHAMPION = frozenset({"comp-validate", "comp-select-champion"})
INGEST = "comp-ingest"

_ENTRY = "entry.json"
_FILES = "files"
#: Offline sources that are not files: a repo that uses one gets no ingest cache.
_TABLE_SOURCES = re.compile(
    r"\b(PostgreSQLSource|BigQuerySource|RedshiftSource|SnowflakeSource|SparkSource|"
    r"TrinoSource|AthenaSource|MsSqlServerSource|ClickhouseSource|CouchbaseColumnarSource)\b"
)
#: Offline stores that read files only: a table source named in the repo's code (say
#: a SparkSource branch taken only on Spark) cannot be what ingest reads through them.
_FILE_ONLY_STORES = frozenset({"duckdb", "file", "dask"})
_DATA_PATH = re.compile(r"""["']([^"'\n]+\.(?:parquet|pq|csv))["']""")


def _tree_digest(path: Path) -> str:
    """Content digest of a file, or of a folder's files and their relative names."""
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode() + b"\0" + file_sha256(p).encode() + b"\0")
    return h.hexdigest()


def _stat_line(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {
        "path": str(path),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": file_sha256(path),
    }


_code_lock = threading.Lock()
_code: str | None = None


def code_version() -> str:
    """crispops' version and a digest of its, the components' and pipelines' sources."""
    global _code
    with _code_lock:
        if _code is None:
            import crispops

            roots = [Path(crispops.__file__).parent]
            for name in ("components", "pipelines"):
                with contextlib.suppress(ImportError):
                    module = __import__(name)
                    if module.__file__:
                        roots.append(Path(module.__file__).parent)
            h = hashlib.sha256(__version__.encode())
            for root in roots:
                for p in sorted(root.rglob("*.py")):
                    h.update(f"{root.name}/{p.relative_to(root)}".encode() + b"\0")
                    h.update(p.read_bytes())
            _code = f"{__version__}+{h.hexdigest()[:16]}"
        return _code


def _offline_store_type(repo: Path) -> str | None:
    """The repo's offline store type (Feast's default, dask, when unset); None when the
    feature_store.yaml cannot be read (then every table source named counts)."""
    import yaml

    try:
        config = yaml.safe_load((repo / "feature_store.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    store = (config or {}).get("offline_store") if isinstance(config, dict) else None
    kind = store.get("type") if isinstance(store, dict) else store
    return str(kind or "dask")


def data_fingerprint(settings: Settings) -> dict[str, Any] | None:
    """What ingest reads, file by file; None when a source is not a file (no cache)."""
    repo = settings.repo_path
    files: set[Path] = {settings.label_source_path.resolve()}
    for p in repo.rglob("*"):
        parts = p.relative_to(repo).parts
        if p.is_file() and not any(x.startswith(".") or x == "__pycache__" for x in parts):
            if "online_store" in p.name:  # the online store: not what ingest reads
                continue
            files.add(p.resolve())
    file_only = _offline_store_type(repo) in _FILE_ONLY_STORES
    for module in repo.glob("*.py"):
        text = module.read_text(encoding="utf-8", errors="replace")
        if not file_only and _TABLE_SOURCES.search(text):
            return None
        for found in _DATA_PATH.findall(text):
            named = Path(found)
            named = named if named.is_absolute() else repo / named
            if named.is_file():
                files.add(named.resolve())
            elif named.is_dir():
                files.update(q.resolve() for q in named.rglob("*") if q.is_file())
    return {"files": [_stat_line(p) for p in sorted(files) if p.is_file()]}


@dataclass
class Hit:
    task: str
    seconds_saved: float
    key: str


class StepCache(LocalCache):
    """kfp.local's cache, keyed on content, held in ``settings.cache_path``."""

    def __init__(
        self,
        settings: Settings,
        pipeline_root: Path,
        on_hit: Callable[[Hit], None] | None = None,
    ) -> None:
        self.settings = settings
        self.root = settings.cache_path
        self.entries = self.root / "entries"
        self.tmp = self.root / "tmp"
        self.pipeline_root = pipeline_root
        self.max_bytes = settings.cache.max_mb * 1024 * 1024
        self.on_hit = on_hit
        self.hits: list[Hit] = []
        self.stored: list[str] = []
        self._local = threading.local()
        self._fingerprint: tuple[bool, dict[str, Any] | None] | None = None
        self.entries.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        super().__init__(str(self.entries))

    # Keys ---------------------------------------------------------------------------
    def _value(self, value: Any) -> Any:
        from kfp import dsl

        if isinstance(value, dsl.Artifact):
            path = Path(value.path)
            return {
                "schema": type(value).schema_title,
                "metadata": value.metadata,
                "sha256": _tree_digest(path) if path.exists() else None,
            }
        if isinstance(value, list):
            return [self._value(v) for v in value]
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        return value

    def _ingest_data(self) -> dict[str, Any] | None:
        if self._fingerprint is None:  # once a run: ingest runs once
            self._fingerprint = (True, data_fingerprint(self.settings))
        return self._fingerprint[1]

    def compute_key(
        self,
        component_name: str,
        image: str,
        full_command: list[str],
        arguments: dict[str, Any],
        env_vars: dict[str, str] | None = None,
        custom_cache_key: str | None = None,
    ) -> str:
        self._local.started = time.perf_counter()
        self._local.component = component_name
        self._local.skip = component_name in UNCACHED
        parts: dict[str, Any] = {
            "component": component_name,
            "image": image,
            "command": list(full_command),
            "arguments": self._value(arguments),
            "env": dict(env_vars or {}),
            "custom": custom_cache_key or "",
            "code": code_version(),
        }
        if component_name == INGEST:
            data = self._ingest_data()
            if data is None:
                self._local.skip = True
            parts["data"] = data
        if component_name in READS_CHAMPION:
            champion = self.settings.champion_file
            parts["champion"] = file_sha256(champion) if champion.is_file() else None
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    # Reads --------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        if getattr(self._local, "skip", False):
            return None
        entry = self.entries / key
        try:
            meta = json.loads((entry / _ENTRY).read_text(encoding="utf-8"))
            if meta.get("key") != key:
                raise ValueError("the entry names another key")
            outputs = self._restore(key, entry, meta)
        except Exception as exc:  # a corrupt, half-written or evicted entry: a miss
            if entry.exists():
                log.info("step cache: entry %s unreadable (%s); running the step", key[:12], exc)
            return None
        with contextlib.suppress(OSError):
            os.utime(entry / _ENTRY)  # least recently used goes first
        hit = Hit(str(meta["task"]), float(meta.get("seconds", 0.0)), key)
        with self._lock:
            self.hits.append(hit)
        if self.on_hit:
            self.on_hit(hit)
        return outputs

    def _restore(self, key: str, entry: Path, meta: dict[str, Any]) -> dict[str, Any]:
        from kfp.dsl import executor

        dest_root = self.pipeline_root / f"cached-{key[:12]}" / str(meta["task"])
        outputs: dict[str, Any] = {}
        for name, out in meta["outputs"].items():
            if "value" in out:
                outputs[name] = out["value"]
                continue
            src = entry / _FILES / name
            dest = dest_root / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if out.get("file", True):
                if not src.exists():
                    raise FileNotFoundError(f"output {name!r} is missing")
                if dest.exists():
                    shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
                if src.is_dir():
                    shutil.copytree(src, dest)
                else:
                    shutil.copy2(src, dest)
                if _tree_digest(dest) != out["sha256"]:
                    raise ValueError(f"output {name!r} does not match its digest")
            outputs[name] = executor.create_artifact_instance(
                {
                    "name": out.get("name", ""),
                    "uri": str(dest),
                    "metadata": out.get("metadata") or {},
                    "type": {"schemaTitle": out["schema"]},
                }
            )
        return outputs

    # Writes -------------------------------------------------------------------------
    def put(self, key: str, outputs: dict[str, Any]) -> None:
        if getattr(self._local, "skip", False):
            return
        from kfp import dsl

        seconds = time.perf_counter() - getattr(self._local, "started", time.perf_counter())
        component = str(getattr(self._local, "component", ""))
        staging = self.tmp / f"{key[:12]}-{uuid.uuid4().hex}"
        try:
            files = staging / _FILES
            files.mkdir(parents=True)
            saved: dict[str, Any] = {}
            for name, value in outputs.items():
                if isinstance(value, dsl.Artifact):
                    src = Path(value.path)
                    if src.is_dir():
                        shutil.copytree(src, files / name)
                    elif src.is_file():
                        shutil.copy2(src, files / name)
                    # else metadata only (Metrics, ClassificationMetrics): no file
                    saved[name] = {
                        "schema": type(value).schema_title,
                        "name": value.name,
                        "metadata": value.metadata,
                        "file": src.exists(),
                        "sha256": _tree_digest(files / name) if src.exists() else None,
                    }
                elif isinstance(value, list):
                    return  # collected artifacts: only a pipeline's outputs, not a task's
                else:
                    saved[name] = {"value": value}
            meta = {
                "key": key,
                "component": component,
                "task": component.removeprefix("comp-"),
                "seconds": round(seconds, 3),
                "created": time.time(),
                "code": code_version(),
                "outputs": saved,
            }
            (staging / _ENTRY).write_text(json.dumps(meta, default=str), encoding="utf-8")
            target = self.entries / key
            try:
                os.rename(staging, target)  # atomic; fails when another run got there first
            except OSError:
                return
            with self._lock:
                self.stored.append(key)
        except Exception as exc:  # the cache never fails a run
            log.warning("step cache: cannot store %s: %s", component, exc)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        evict(self.root, self.max_bytes)


# Housekeeping ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    key: str
    task: str
    bytes: int
    seconds: float
    created: float
    used: float
    ok: bool


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def entries(root: Path) -> list[Entry]:
    """Every entry, most recently used first; an unreadable one has ok=False."""
    out: list[Entry] = []
    folder = root / "entries"
    if not folder.is_dir():
        return out
    for entry in folder.iterdir():
        with contextlib.suppress(OSError):
            meta_path = entry / _ENTRY
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                ok = meta.get("key") == entry.name
            except (OSError, ValueError):
                meta, ok = {}, False
            used = meta_path.stat().st_mtime if meta_path.exists() else entry.stat().st_mtime
            out.append(
                Entry(
                    key=entry.name,
                    task=str(meta.get("task", "?")),
                    bytes=_size(entry),
                    seconds=float(meta.get("seconds", 0.0)),
                    created=float(meta.get("created", 0.0)),
                    used=used,
                    ok=ok,
                )
            )
    return sorted(out, key=lambda e: e.used, reverse=True)


def _remove(root: Path, keys: Iterable[str]) -> int:
    """Rename each entry away (atomic for a concurrent reader), then delete it."""
    removed = 0
    trash = root / "tmp"
    trash.mkdir(parents=True, exist_ok=True)
    for key in keys:
        gone = trash / f"gone-{key[:12]}-{uuid.uuid4().hex}"
        try:
            os.rename(root / "entries" / key, gone)
        except OSError:
            continue
        shutil.rmtree(gone, ignore_errors=True)
        removed += 1
    return removed


def evict(root: Path, max_bytes: int) -> int:
    """Delete least recently used entries until the cache fits ``max_bytes``."""
    listed = entries(root)
    total = sum(e.bytes for e in listed)
    drop: list[str] = []
    for e in reversed(listed):  # least recently used first
        if total <= max_bytes:
            break
        drop.append(e.key)
        total -= e.bytes
    return _remove(root, drop)


def clear(root: Path) -> int:
    """Delete every entry; the number deleted."""
    removed = _remove(root, [e.key for e in entries(root)])
    shutil.rmtree(root / "tmp", ignore_errors=True)
    return removed
