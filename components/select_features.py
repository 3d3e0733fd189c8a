from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def select_features(
    settings: str,
    train: Input[Dataset],
    selection: Output[Artifact],
    contract: Input[Artifact],
    findings: Input[Artifact],
):
    """Rank features by mutual information on the training split; keep those above threshold
    (the features validate left out of training are not candidates)."""
    from pathlib import Path

    from crispops.lifecycle import select_features_task, task_started
    from crispops.step_settings import step_settings

    task_started()

    result = select_features_task(
        step_settings(settings),
        Path(train.path),
        Path(selection.path),
        Path(contract.path),
        Path(findings.path),
    )
    selection.metadata.update({"kept": result["kept"], "dropped": result["dropped"]})
