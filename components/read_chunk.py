from kfp import dsl
from kfp.dsl import Dataset, Output

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def read_chunk(settings: str, chunk: dict, rows: Output[Dataset], config_file: str = ""):
    """Read one chunk's latest row per entity from the offline store (or its record)."""
    from pathlib import Path

    from crispops.lifecycle import read_chunk_task, task_started
    from crispops.step_settings import step_settings

    task_started(reads_feast=True)
    info = read_chunk_task(step_settings(settings), chunk, Path(rows.path), config_file or None)
    rows.metadata.update(info)
