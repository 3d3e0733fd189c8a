from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train(
    settings: str,
    candidate: dict,
    train: Input[Dataset],
    selection: Input[Artifact],
    model: Output[Model],
    contract: Input[Artifact],
):
    """Fit one candidate pipeline (preprocessing + estimator) with a CV grid search."""
    from pathlib import Path

    from crispops.lifecycle import task_started, train_task
    from crispops.step_settings import step_settings

    task_started()

    info = train_task(
        step_settings(settings),
        Path(train.path),
        Path(selection.path),
        candidate,
        Path(model.path),
        Path(contract.path),
    )
    model.metadata.update(info)
