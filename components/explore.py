from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def explore(
    settings: str,
    dataset: Input[Dataset],
    report: Output[HTML],
    summary: Output[Markdown],
    contract: Input[Artifact],
):
    """Write the EDA report (self-contained HTML) and a Markdown summary."""
    from pathlib import Path

    from crispops.lifecycle import explore_task, task_started
    from crispops.step_settings import step_settings

    task_started()

    result = explore_task(
        step_settings(settings),
        Path(dataset.path),
        Path(report.path),
        Path(summary.path),
        Path(contract.path),
    )
    report.metadata.update(result)
