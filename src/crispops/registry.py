"""The registry of a project's packaged models: champion, challengers, retired, rejected.

One JSON file in the state directory (``models.json``), a list of entries, replaced
atomically on every change (:func:`crispops.io.write_json`), so a crash leaves the
old list or the new one. The champion pointer (``champion.json``) stays the one
source of what serves; the registry is the history beside it:

- ``champion``: the model the pointer names (at most one);
- ``challenger``: packaged by a run whose best candidate beat the trivial baseline
  but not the champion by the promotion margin (the gate's verdict is kept), or
  one in a shadow/canary rollout;
- ``retired``: a former champion;
- ``rejected``: a challenger whose live analysis failed.

Writers are the package step and the rollout (one at a time per project: a run
and a rollout of the same project do not run at once).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crispops.errors import CrispopsError
from crispops.io import read_json, write_json


class RegistryError(CrispopsError, ValueError):
    """The models registry cannot be read or has no such model."""


class Status(enum.StrEnum):
    CHAMPION = "champion"
    CHALLENGER = "challenger"
    RETIRED = "retired"
    REJECTED = "rejected"


@dataclass(frozen=True)
class ModelEntry:
    model_tag: str
    bento_tag: str
    status: str  # a Status value
    metric: str
    score: float
    run_id: str = ""
    candidate: str = ""
    created_at: str = ""
    updated_at: str = ""
    #: The promotion gate's verdict for the run that packaged it (promoted, kept_champion).
    verdict: str = ""
    #: Why its status is what it is (the gate's reason, the analysis' reasons).
    reason: str = ""
    history: list[dict[str, str]] = field(default_factory=list)
    #: The champion pointer this model becomes when promoted (written at packaging).
    record: dict[str, Any] = field(default_factory=dict)
    #: ``sha256:<hex>`` of the model file: a run whose model has it reuses this Bento.
    model_digest: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_models(path: Path) -> list[ModelEntry]:
    """Every registered model, oldest first; [] when there is no registry yet."""
    if not path.is_file():
        return []
    try:
        data = read_json(path)
        if not isinstance(data, list):
            raise TypeError(f"expected a JSON list, got {type(data).__name__}")
        entries = [ModelEntry(**item) for item in data]
        for e in entries:
            Status(e.status)
    except (OSError, ValueError, TypeError) as exc:
        raise RegistryError(f"{path}: unreadable models registry ({exc})") from None
    return entries


def find(path: Path, model_or_bento_tag: str) -> ModelEntry:
    """The entry whose model tag or Bento tag is the one given."""
    for e in read_models(path):
        if model_or_bento_tag in (e.model_tag, e.bento_tag):
            return e
    raise RegistryError(
        f"{path}: no model {model_or_bento_tag!r} in the registry (`crispops models` lists them)"
    )


def _write(path: Path, entries: list[ModelEntry]) -> None:
    write_json(path, [e.to_dict() for e in entries])


def _moved(entry: ModelEntry, status: Status, reason: str, when: str) -> ModelEntry:
    history = [*entry.history, {"status": status.value, "at": when, "reason": reason}]
    return replace(entry, status=status.value, reason=reason, updated_at=when, history=history)


def register(path: Path, entry: ModelEntry) -> ModelEntry:
    """Add (or replace, by model tag) an entry; a new champion retires the previous one."""
    when = entry.updated_at or entry.created_at or now()
    entry = replace(
        entry,
        created_at=entry.created_at or when,
        updated_at=when,
        history=entry.history or [{"status": entry.status, "at": when, "reason": entry.reason}],
    )
    entries = [e for e in read_models(path) if e.model_tag != entry.model_tag]
    if entry.status == Status.CHAMPION:
        entries = [
            _moved(e, Status.RETIRED, f"replaced by {entry.model_tag}", when)
            if e.status == Status.CHAMPION
            else e
            for e in entries
        ]
    _write(path, [*entries, entry])
    return entry


def set_status(path: Path, model_or_bento_tag: str, status: Status, reason: str) -> ModelEntry:
    """Move one model to ``status``; promoting it retires the current champion."""
    target = find(path, model_or_bento_tag)
    when = now()
    moved = _moved(target, status, reason, when)
    out = []
    for e in read_models(path):
        if e.model_tag == target.model_tag:
            out.append(moved)
        elif status is Status.CHAMPION and e.status == Status.CHAMPION:
            out.append(_moved(e, Status.RETIRED, f"replaced by {target.model_tag}", when))
        else:
            out.append(e)
    _write(path, out)
    return moved
