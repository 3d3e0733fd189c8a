from kfp import dsl
from kfp.dsl import Dataset, Input

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def write_chunks(settings: str, chunks: Input[list[Dataset]], config_file: str = "") -> str:
    """Write the read chunks online, oldest first per view, each recorded in the registry."""
    import json
    from pathlib import Path

    from crispops.lifecycle import task_started, write_chunks_task
    from crispops.step_settings import step_settings

    task_started(reads_feast=True)
    read = [(dict(c.metadata), Path(c.path)) for c in chunks]
    result = write_chunks_task(step_settings(settings), read, config_file or None)
    print(result)
    return json.dumps(result, sort_keys=True)
