"""Small, safe file helpers shared by the steps: atomic writes, content digests and
tabular reads."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crispops.errors import DataFileError

if TYPE_CHECKING:  # pandas is imported by what reads a table: the package step never does
    import pandas as pd


def update_digest(h: Any, path: Path) -> Any:
    """Feed ``path``'s bytes to the hash ``h`` a megabyte at a time; return ``h``."""
    with Path(path).open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's content, in hex."""
    return str(update_digest(hashlib.sha256(), path).hexdigest())


@functools.cache
def _umask() -> int:
    """The process's umask (read once: setting it to read it is not thread-safe)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` then move tmp over ``path``: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes the file 0600; give it the mode a plain open() would have
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    def _write(p: Path) -> None:
        p.write_text(text, encoding="utf-8")

    return atomic_write(path, _write)


def write_json(path: Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_frame(path: Path, df: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: df.to_parquet(p, index=False))


def read_table(path: Path) -> pd.DataFrame:
    """Read a Parquet or CSV file, with errors that name the file."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: file not found")
    if path.is_dir():
        raise DataFileError(f"{path}: is a directory, expected a Parquet or CSV file")
    if path.stat().st_size == 0:
        raise DataFileError(f"{path}: file is empty")
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            df = pd.read_parquet(path)
        elif suffix in {".csv", ".txt"}:
            df = pd.read_csv(path)
        else:
            raise DataFileError(f"{path}: unsupported file type {suffix!r}; use .parquet or .csv")
    except DataFileError:
        raise
    except Exception as exc:  # pyarrow/pandas raise many kinds for a corrupt file
        raise DataFileError(f"{path}: cannot be read as {suffix[1:]}: {exc}") from None
    if df.empty:
        raise DataFileError(f"{path}: holds no rows")
    return df
