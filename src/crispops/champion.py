"""The champion pointer: which packaged model serves, and how it scored.

One small JSON file in the project's state directory, replaced atomically, so a
crash at any point leaves either the old champion or the new one, never half.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crispops.errors import ChampionError
from crispops.io import read_json, write_json


@dataclass(frozen=True)
class Champion:
    model_tag: str
    bento_tag: str
    model_file: str
    candidate: str
    metric: str
    score: float
    metrics: dict[str, float] = field(default_factory=dict)
    promoted_at: str = ""
    run_id: str = ""
    #: The model's input columns (what validate guards against going dead).
    inputs: list[str] = field(default_factory=list)
    #: The label rows it was trained and tested on: {"start": ..., "end": ...} (ISO).
    training_window: dict[str, str] = field(default_factory=dict)
    #: The trivial baseline's score on the same holdout when it was promoted.
    baseline_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_champion(path: Path) -> Champion | None:
    """The champion, or None when there is none; ChampionError when the file is bad."""
    if not path.is_file():
        return None
    try:
        data = read_json(path)
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        return Champion(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise ChampionError(f"{path}: unreadable champion pointer ({exc})") from None


def write_champion(path: Path, champion: Champion) -> None:
    write_json(path, champion.to_dict())
