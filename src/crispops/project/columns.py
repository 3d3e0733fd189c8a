"""What a table's columns can become in a Feast repo: names and Feast types.

Feast field names must be Python identifiers; values must be one of Bool, Int64,
Float64 or String. Each check says what a column holds when it cannot be used.
"""

from __future__ import annotations

import keyword
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crispops.io import read_table
from crispops.steps.ingest import FEAST_TS

#: Column names Feast uses itself (the timestamp column may be called event_timestamp).
RESERVED_NAMES = frozenset({FEAST_TS, "created", "entity_row_id"})
FEAST_TYPES = ("Bool", "Float64", "Int64", "String")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# Names ---------------------------------------------------------------------------------
def project_name(directory: Path | str) -> str:
    """A Feast project name from a directory name: lower case, [a-z0-9_], starts with a letter."""
    name = re.sub(r"[^a-z0-9_]+", "_", Path(directory).name.lower())
    name = re.sub(r"_+", "_", name).strip("_") or "project"
    return f"project_{name}" if name[0].isdigit() else name


def entity_name(column: str) -> str:
    """customer_id -> customer: the Feast entity's name, as in Feast's templates."""
    base = column[:-3] if column.lower().endswith("_id") and len(column) > 3 else column
    return project_name(base) if base.strip("_") else "entity"


def bad_name(name: str) -> str | None:
    """Why a column name cannot be a Feast field / Python identifier, or None."""
    if not _NAME.match(name):
        return "not letters, digits and underscores starting with a letter"
    if keyword.iskeyword(name):
        return "a Python keyword"
    if name.startswith("__"):
        return "starts with a double underscore"
    return None


# Types ---------------------------------------------------------------------------------
def _py_kind(cls: type) -> str | None:
    """The Feast type of one Python value's class, or None."""
    if issubclass(cls, bool | np.bool_):
        return "Bool"
    if issubclass(cls, int | np.integer):
        return "Int64"
    if issubclass(cls, float | np.floating):
        return "Float64"
    if issubclass(cls, str):
        return "String"
    return None


def _type_word(cls: type) -> str:
    if issubclass(cls, list | tuple | np.ndarray):
        return "list"
    if issubclass(cls, dict):
        return "dict"
    return cls.__name__


def feast_type(series: pd.Series) -> str:
    """The Feast type of a column: Bool, Int64, Float64 or String.

    Raise ValueError saying what the column holds when it is none of these (times,
    durations, lists, dicts, bytes, values of mixed types) or holds no values at all.
    """
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return feast_type(series.astype(object))
    if pd.api.types.is_bool_dtype(dtype):
        return "Bool"
    if pd.api.types.is_integer_dtype(dtype):
        if dtype == np.uint64 and series.notna().any() and int(series.max()) > 2**63 - 1:
            raise ValueError("integers beyond the signed 64-bit range")
        return "Int64"
    if pd.api.types.is_float_dtype(dtype):
        return "Float64"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        raise ValueError(
            "timestamps; only the timestamp column may hold times: derive a "
            "number such as the age in days, or drop it"
        )
    if pd.api.types.is_timedelta64_dtype(dtype):
        raise ValueError("durations; convert them to a number, e.g. seconds")
    if pd.api.types.is_complex_dtype(dtype):
        raise ValueError("complex numbers")
    if not (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)):
        # no square brackets: the CLI prints messages as rich markup
        raise ValueError(f"values of type {str(dtype).replace('[', '(').replace(']', ')')}")
    values = series.dropna()
    if values.empty:
        raise ValueError("no values")
    classes = set(map(type, values))
    kinds = {_py_kind(cls) for cls in classes}
    if kinds == {"Int64", "Float64"}:
        return "Float64"
    kind = next(iter(kinds))
    if len(kinds) == 1 and kind is not None:
        return kind
    words = sorted({_type_word(cls) for cls in classes})
    if len(words) == 1:
        raise ValueError(f"{words[0]} values")
    raise ValueError(f"values of mixed types ({', '.join(words)})")


def read_data(path: Path) -> pd.DataFrame:
    """Read the input table (crispops.io.read_table), keeping CSV text columns as text.

    pandas reads a large CSV in chunks and may type one chunk of a column as numbers
    and another as strings; such a column is read again as the strings the file holds.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.DtypeWarning)  # handled below
        df = read_table(path)
    if path.suffix.lower() not in {".csv", ".txt"}:
        return df
    mixed = [
        c
        for c in df.columns
        if pd.api.types.is_object_dtype(df[c]) and len(set(map(type, df[c].dropna()))) > 1
    ]
    if not mixed:
        return df
    again = pd.read_csv(path, usecols=mixed, dtype=dict.fromkeys(mixed, str))
    return df.assign(**{c: again[c] for c in mixed})


def canonical(series: pd.Series, kind: str) -> pd.Series:
    """The column in the one pandas dtype per Feast type that Parquet and Feast agree on."""
    nulls = bool(series.isna().any())
    if kind == "Float64":
        return series.astype("float64")
    if kind == "Int64":
        return series.astype("Int64" if nulls else "int64")
    if kind == "Bool":
        return series.astype("boolean" if nulls else "bool")
    return series.astype(object).where(series.notna(), None)


@dataclass(frozen=True)
class PreparedData:
    """The input split into the feature store's file and the label source."""

    features: pd.DataFrame  # entity, event_timestamp, feature columns
    labels: pd.DataFrame  # entity, timestamp, label
    feature_types: dict[str, str]  # feature -> Feast type name
    entity_type: str  # Feast ValueType member: INT64 or STRING
    oldest: pd.Timestamp

    @property
    def rows(self) -> int:
        return len(self.labels)
