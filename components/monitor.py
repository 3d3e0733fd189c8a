from kfp import dsl
from kfp.dsl import HTML, Metrics, Output

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def monitor(
    config: str,
    window: str,
    end: str,
    act: bool,
    report: Output[HTML],
    figures: Output[Metrics],
) -> str:
    """Judge a window of the prediction log against the champion; with act, retrain once
    per (model, window) when the policy says so. Returns the decision as JSON."""
    import json
    from pathlib import Path

    from crispops.config import Settings
    from crispops.lifecycle import task_started
    from crispops.monitoring.task import monitor_task

    task_started()
    result = monitor_task(
        Settings.from_json(config), window=window, end=end, act=act, report_out=Path(report.path)
    )
    for name, value in result["figures"].items():
        figures.log_metric(name, value)
    print(result["action"] or result["decision"]["reasons"])
    return json.dumps(result["decision"], default=str)
