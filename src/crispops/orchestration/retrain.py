"""The retraining child process the monitor starts: ``python -m crispops.orchestration.retrain
train RUN_ID`` (a local training run, the same code path as ``crispops run``) or ``submit
RUN_NAME HOST`` (a run submitted to KFP), the settings JSON on stdin, the result as JSON on
the last line of stdout.

It lives here, above the monitoring layer, so that the monitor (which the ``monitoring``
pipeline's component runs) starts it by module name and never imports orchestration.
"""

from __future__ import annotations

import json
import sys

from crispops.config import Settings
from crispops.errors import CrispopsError


def main(argv: list[str]) -> int:
    """``train RUN_ID`` or ``submit RUN_NAME HOST``, the settings JSON on stdin; prints
    the result as JSON. The child process
    :func:`crispops.monitoring.task.train_here` and ``submit_there`` run."""
    settings = Settings.from_json(sys.stdin.read())
    if argv[:1] == ["train"] and len(argv) == 2:
        from crispops.orchestration.local import run_training

        run = run_training(settings, run_id=argv[1])
        if not run.ok:
            print(f"run {argv[1]} failed at {run.failed_step or '?'} (log: {run.log})")
            return 1
        print(json.dumps({"run_id": run.run_id, "log": str(run.log), "decision": run.decision}))
        return 0
    if argv[:1] == ["submit"] and len(argv) == 3:
        from crispops.orchestration.submit import submit

        sent = submit(settings, host=argv[2], pipeline="training", run_name=argv[1])
        print(json.dumps({"run_id": sent.run_id, "url": sent.url}))
        return 0
    print("usage: python -m crispops.orchestration.retrain train RUN_ID | submit RUN_NAME HOST")
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except CrispopsError as exc:
        print(f"error: {exc}")
        sys.exit(2)
