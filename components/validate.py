from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def validate(
    settings: str,
    dataset: Input[Dataset],
    report: Output[Markdown],
    profile: Output[Artifact],
    findings: Output[Artifact],
    contract: Input[Artifact],
):
    """Check the training set against the contract's rules; an error stops the run here."""
    from pathlib import Path

    from crispops.lifecycle import task_started, validate_task
    from crispops.step_settings import step_settings

    task_started()

    summary = validate_task(
        step_settings(settings),
        Path(dataset.path),
        Path(report.path),
        Path(profile.path),
        Path(contract.path),
        findings_out=Path(findings.path),
        ingest_summary=dict(dataset.metadata),
    )
    report.metadata["rows"] = summary["rows"]
    findings.metadata.update({"dropped": summary["dropped"], "ok": summary["ok"]})
