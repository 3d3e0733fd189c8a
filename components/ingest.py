from kfp import dsl
from kfp.dsl import Artifact, Dataset, Output

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest(settings: str, dataset: Output[Dataset], contract: Output[Artifact]):
    """Join the label rows point-in-time with the FeatureService's features."""
    from pathlib import Path

    from crispops.lifecycle import ingest_task, task_started
    from crispops.step_settings import step_settings

    task_started(reads_feast=True)

    summary = ingest_task(step_settings(settings), Path(dataset.path), Path(contract.path))
    dataset.metadata.update({k: v for k, v in summary.items() if k != "contract"})
    contract.metadata["feature_service"] = summary["contract"]["feature_service"]
