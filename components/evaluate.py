from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate(
    settings: str,
    model: Input[Model],
    test: Input[Dataset],
    metrics: Output[Metrics],
    curves: Output[ClassificationMetrics],
    evaluation: Output[Artifact],
):
    """Score one candidate on the holdout: task metrics, ROC curve, confusion matrix."""
    from pathlib import Path

    from crispops.lifecycle import evaluate_task, task_started
    from crispops.step_settings import step_settings

    task_started()

    result = evaluate_task(
        step_settings(settings),
        Path(model.path),
        Path(test.path),
        model.metadata["candidate"],
        Path(evaluation.path),
    )
    for name, value in result.metrics.items():
        metrics.log_metric(name, round(value, 6))
    if result.roc:
        curves.log_roc_curve(result.roc["fpr"], result.roc["tpr"], result.roc["threshold"])
    if result.confusion:
        curves.log_confusion_matrix(result.confusion["labels"], result.confusion["matrix"])
    evaluation.metadata["candidate"] = result.candidate
