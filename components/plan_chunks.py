from kfp import dsl

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def plan_chunks(settings: str, config_file: str = "", end: str = "") -> list:
    """Cut each feature view's window, from its watermark to ``end`` (now), into chunks."""
    from crispops.lifecycle import plan_chunks_task, task_started
    from crispops.step_settings import step_settings

    task_started(reads_feast=True)
    return plan_chunks_task(step_settings(settings), config_file or None, end)
