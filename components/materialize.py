from kfp import dsl

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def materialize(settings: str, config_file: str = "") -> str:
    """Load the latest feature values into the online store, incrementally."""
    from crispops.lifecycle import materialize_task, task_started
    from crispops.step_settings import step_settings

    task_started(reads_feast=True)

    result = materialize_task(step_settings(settings), config_file or None)
    print(result)
    return result
