from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def split(settings: str, dataset: Input[Dataset], train: Output[Dataset], test: Output[Dataset]):
    """Hold out the newest rows (or a random share) as the test set."""
    from pathlib import Path

    from crispops.lifecycle import split_task, task_started
    from crispops.step_settings import step_settings

    task_started()

    result = split_task(
        step_settings(settings), Path(dataset.path), Path(train.path), Path(test.path)
    )
    train.metadata.update(result)
    test.metadata.update(result)
