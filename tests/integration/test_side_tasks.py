"""Side tasks (orchestration/local.py): a top-level task nothing waits for runs beside
the rest of the pipeline through kfp.local, as on a cluster, and its failure fails the
run after the rest ran. Tiny lightweight components, real SubprocessRunner processes."""

import shutil
from pathlib import Path

import pytest
from kfp import dsl

from crispops.config import load_settings
from crispops.orchestration.local import _run

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def first() -> str:
    return "a"


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def slow(value: str, seconds: float) -> str:
    import time

    time.sleep(seconds)
    return value + "b"


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def report(value: str, seconds: float, fail: bool):
    import time

    time.sleep(seconds)
    if fail:
        raise RuntimeError("the report could not be drawn")


@dsl.pipeline(name="side-tasks")
def side_pipeline(fail: bool = False) -> str:
    a = first().set_caching_options(False)
    report(value=a.output, seconds=2.0, fail=fail).set_caching_options(False)
    b = slow(value=a.output, seconds=1.5).set_caching_options(False)
    c = slow(value=b.output, seconds=1.5).set_caching_options(False)
    # control flow, as the training pipeline has: kfp.local's enhanced orchestrator
    with dsl.If(c.output == "abb"):
        first().set_caching_options(False)
    return c.output


# (no `from __future__ import annotations`: kfp reads the components' annotations)
@pytest.mark.parametrize("fail", [False, True])
def test_a_side_task_runs_beside_the_chain_and_its_failure_fails_the_run(
    tmp_path: Path, fail: bool
) -> None:
    shutil.copy(ROOT / "crispops.toml", tmp_path)  # only its state folder is used
    settings = load_settings(tmp_path)
    args = {"fail": fail}
    result = _run(settings, side_pipeline, args, f"side-{fail}", None, "subprocess", False)
    spans = result.spans()
    slow_spans = sorted(spans["slow"] + spans["slow-2"])
    assert len(slow_spans) == 2, spans  # the chain ran to its end either way
    if fail:
        assert not result.ok
        assert result.failed_step == "report", result.error
        return
    assert result.ok, result.error
    assert result.output("slow-2") == "abb"
    # the report started before the chain's first link ended, and ended after it
    ((report_start, report_end),) = spans["report"]
    assert report_start < slow_spans[0][1] < report_end, spans
