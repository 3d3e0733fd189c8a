"""The models registry: atomic JSON, one champion, promotion retires the previous one."""

from __future__ import annotations

from pathlib import Path

import pytest

from crispops.registry import (
    ModelEntry,
    RegistryError,
    Status,
    find,
    read_models,
    register,
    set_status,
)


def entry(tag: str, status: Status) -> ModelEntry:
    return ModelEntry(f"m:{tag}", f"b:{tag}", status.value, "roc_auc", 0.8, run_id=f"run-{tag}")


def test_a_new_champion_retires_the_old_and_challengers_stay(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    register(path, entry("1", Status.CHAMPION))
    register(path, entry("2", Status.CHALLENGER))
    register(path, entry("3", Status.CHAMPION))
    got = {e.model_tag: e.status for e in read_models(path)}
    assert got == {"m:1": "retired", "m:2": "challenger", "m:3": "champion"}
    assert find(path, "b:2").model_tag == "m:2"


def test_promoting_a_challenger_and_rejecting_one(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    register(path, entry("1", Status.CHAMPION))
    register(path, entry("2", Status.CHALLENGER))
    register(path, entry("3", Status.CHALLENGER))
    set_status(path, "b:2", Status.CHAMPION, "canary passed at 100%")
    rejected = set_status(path, "m:3", Status.REJECTED, "error rate")
    got = {e.model_tag: e.status for e in read_models(path)}
    assert got == {"m:1": "retired", "m:2": "champion", "m:3": "rejected"}
    assert [h["status"] for h in rejected.history] == ["challenger", "rejected"]


def test_bad_registry_and_unknown_model_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text('{"not": "a list"}')
    with pytest.raises(RegistryError, match=r"models\.json: unreadable"):
        read_models(path)
    path.write_text("[]")
    with pytest.raises(RegistryError, match="no model 'x'"):
        find(path, "x")
