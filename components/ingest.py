from kfp import dsl
from kfp.dsl import Artifact, Dataset, Output

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest(config: str, dataset: Output[Dataset], contract: Output[Artifact]):
    """Join the label rows point-in-time with the FeatureService's features."""
    from pathlib import Path

    from crispops.config import Settings
    from crispops.lifecycle import ingest_task

    summary = ingest_task(Settings.from_json(config), Path(dataset.path), Path(contract.path))
    dataset.metadata.update({k: v for k, v in summary.items() if k != "contract"})
    contract.metadata["feature_service"] = summary["contract"]["feature_service"]
