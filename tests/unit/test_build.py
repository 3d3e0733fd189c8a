"""The wheelhouse's stamp (cluster/build.py): its third-party wheels are made again only
when what they depend on changed (constraints, pyproject, the base image, the extra)."""

from __future__ import annotations

from pathlib import Path

from crispops.cluster.build import _fresh, _seal, _stamp


def _source(tmp_path: Path) -> Path:
    (tmp_path / "constraints.txt").write_text("feast==0.67.0\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'crispops'\n")
    (tmp_path / "src").mkdir()
    return tmp_path


def test_the_stamp_follows_constraints_pyproject_base_image_and_extra(tmp_path: Path) -> None:
    source = _source(tmp_path)
    first = _stamp(source, "sha256:aaa", "")
    assert _stamp(source, "sha256:aaa", "") == first
    (source / "src" / "code.py").write_text("x = 1\n")  # the project's own code: no
    assert _stamp(source, "sha256:aaa", "") == first
    assert _stamp(source, "sha256:bbb", "") != first
    assert _stamp(source, "sha256:aaa", "[spark]") != first
    (source / "constraints.txt").write_text("feast==0.68.0\n")
    assert _stamp(source, "sha256:aaa", "") != first
    (source / "constraints.txt").write_text("feast==0.67.0\n")
    (source / "pyproject.toml").write_text("[project]\nname = 'crispops'\nversion = '2'\n")
    assert _stamp(source, "sha256:aaa", "") != first


def test_a_folder_is_fresh_only_with_its_own_stamp(tmp_path: Path) -> None:
    folder = tmp_path / "wheelhouse"
    assert not _fresh(folder, "abc")  # no folder
    folder.mkdir()
    assert not _fresh(folder, "abc")  # no stamp: made by an older crispops, or cut short
    _seal(folder, "abc")
    assert _fresh(folder, "abc")
    assert not _fresh(folder, "abd")
