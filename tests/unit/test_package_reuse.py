"""The package step reuses the Bento of a model already packaged (same model digest)
instead of building a second; these cases never reach BentoML, so no store is made.
The full path (a rerun through kfp.local) is in tests/integration/test_challenger.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from crispops import registry
from crispops.champion import Champion, read_champion, write_champion
from crispops.config import Settings, load_settings
from crispops.io import write_json
from crispops.lifecycle import model_digest, package_task, packaged_model, packaged_note

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def s(tmp_path: Path) -> Settings:
    shutil.copy(ROOT / "crispops.toml", tmp_path / "crispops.toml")
    return load_settings(tmp_path)


def packaged(s: Settings, tag: str, status: registry.Status, content: bytes, digest: bool) -> Path:
    """A model file in the 'store' and its registry entry (with or without its digest)."""
    model = s.state_path / "store" / tag / "model.joblib"
    model.parent.mkdir(parents=True)
    model.write_bytes(content)
    record = Champion(f"m:{tag}", f"b:{tag}", str(model), tag, "roc_auc", 0.8, run_id=f"run-{tag}")
    registry.register(
        s.models_file,
        registry.ModelEntry(
            record.model_tag,
            record.bento_tag,
            status.value,
            "roc_auc",
            0.8,
            run_id=record.run_id,
            record=record.to_dict(),
            model_digest=model_digest(model) if digest else "",
        ),
    )
    if status is registry.Status.CHAMPION:
        write_champion(s.champion_file, record)
    return model


def package(s: Settings, tmp_path: Path, model: Path, promote: bool) -> Champion:
    decision = tmp_path / "decision.json"
    verdict = "promoted" if promote else "kept_champion"
    write_json(decision, {"verdict": verdict, "promote": promote, "reason": "same model"})
    return package_task(
        s, model_file=model, decision_file=decision, profile_file=tmp_path / "nope", run_id="r2"
    )


def test_a_kept_model_that_is_a_challenger_already_reuses_its_bento(
    s: Settings, tmp_path: Path
) -> None:
    packaged(s, "champ", registry.Status.CHAMPION, b"champion model", digest=True)
    packaged(s, "old", registry.Status.CHALLENGER, b"challenger model", digest=False)
    before = registry.read_models(s.models_file)
    rerun = tmp_path / "rerun.joblib"
    rerun.write_bytes(b"challenger model")  # the same bytes the challenger was built from

    got = package(s, tmp_path, rerun, promote=False)
    assert (got.bento_tag, got.run_id) == ("b:old", "run-old")
    assert registry.read_models(s.models_file) == before  # nothing registered
    assert not (s.bentoml_home / "models").exists()  # nothing saved or built
    assert packaged_note(got, "r2").startswith("reused Bento b:old")


def test_the_champions_own_model_is_not_packaged_again(s: Settings, tmp_path: Path) -> None:
    model = packaged(s, "champ", registry.Status.CHAMPION, b"champion model", digest=True)
    got = package(s, tmp_path, model, promote=False)
    assert got == read_champion(s.champion_file)
    assert packaged_note(got, "r2") != packaged_note(got, got.run_id)


def test_a_reused_challenger_the_gate_promotes_becomes_the_champion(
    s: Settings, tmp_path: Path
) -> None:
    packaged(s, "champ", registry.Status.CHAMPION, b"champion model", digest=True)
    model = packaged(s, "old", registry.Status.CHALLENGER, b"challenger model", digest=True)
    got = package(s, tmp_path, model, promote=True)
    assert got.bento_tag == "b:old"
    pointer = read_champion(s.champion_file)
    assert pointer is not None and pointer.bento_tag == "b:old"
    status = {e.model_tag: e.status for e in registry.read_models(s.models_file)}
    assert status == {"m:champ": "retired", "m:old": "champion"}


def test_a_different_or_retired_model_is_no_match(s: Settings, tmp_path: Path) -> None:
    packaged(s, "gone", registry.Status.REJECTED, b"rejected model", digest=True)
    other = tmp_path / "other.joblib"
    other.write_bytes(b"rejected model")
    assert packaged_model(s, model_digest(other)) is None  # rejected: never served again
    other.write_bytes(b"a new model")
    assert packaged_model(s, model_digest(other)) is None
