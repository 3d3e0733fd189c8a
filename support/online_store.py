"""Online stores under faults: the Redis store's Feast config, materialization killed
part-way, and how far each feature view got."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

#: A Feast config for the Redis online store on 127.0.0.1:6379 (``.format(project=)``).
REDIS_YAML = """project: {project}
provider: local
registry: data/registry_{project}.db
online_store:
  type: redis
  connection_string: 127.0.0.1:6379
offline_store:
  type: duckdb
entity_key_serialization_version: 3
"""

#: ``python -c KILLER <repo> <config or ""> <when>``: materialize, SIGKILLed part-way:
#: ``between-views`` (after the first view is written) or after ``<when>`` seconds.
KILLER = textwrap.dedent("""
    import os, signal, sys, threading
    from pathlib import Path
    import feast  # imported before the clock starts
    from crispops.steps.features import materialize
    def die(*_):
        os.kill(os.getpid(), signal.SIGKILL)
    when = sys.argv[3]
    if when == "between-views":  # after the first view is written, before the second
        on_view = lambda name, i, n: die() if i == 1 else None
    else:  # at a moment inside the run
        on_view = None
        threading.Timer(float(when), die).start()
    materialize(Path(sys.argv[1]), config_file=sys.argv[2] or None, on_view=on_view)
    die()  # finished first: die anyway, as a killed job would
""")


def view_ends(repo: Path, config: str | None) -> dict[str, Any]:
    """Each feature view's last materialized end time (None: never materialized)."""
    from feast import FeatureStore

    fs = FeatureStore(repo_path=str(repo), fs_yaml_file=repo / (config or "feature_store.yaml"))
    return {v.name: v.most_recent_end_time for v in fs.list_feature_views()}
