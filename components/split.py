from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def split(config: str, dataset: Input[Dataset], train: Output[Dataset], test: Output[Dataset]):
    """Hold out the newest rows (or a random share) as the test set."""
    from pathlib import Path

    from crispops.config import Settings
    from crispops.lifecycle import split_task

    result = split_task(
        Settings.from_json(config), Path(dataset.path), Path(train.path), Path(test.path)
    )
    train.metadata.update(result)
    test.metadata.update(result)
