"""Fixtures the serving modules share: one record holding every feature, and an entity
the online store knows (each module-scoped: computed once per test module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crispops.config import load_settings
from support.clients import feature_row


@pytest.fixture(scope="module")
def record(trained_project: Path) -> dict[str, Any]:
    return feature_row(trained_project)


@pytest.fixture(scope="module")
def known_entity(trained_project: Path) -> int:
    import pandas as pd

    s = load_settings(trained_project)
    labels = pd.read_parquet(s.label_source_path)
    return int(labels.sort_values(s.data.timestamp)[s.data.join_keys[0]].iloc[-1])
