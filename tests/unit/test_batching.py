"""The bound on BentoML's learned batch wait (crispops.serving.batching)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bentoml._internal.marshal import dispatcher

from crispops.serving.batching import bound_batch_wait


@pytest.fixture
def restore_optimizer() -> Iterator[None]:
    before = dict(dispatcher.Optimizer.__dict__)
    yield
    for name in ("trigger_refresh", "_crispops_refresh"):
        if name in before:
            setattr(dispatcher.Optimizer, name, before[name])
        elif name in dispatcher.Optimizer.__dict__:
            delattr(dispatcher.Optimizer, name)


def after_a_burst() -> dispatcher.Optimizer:
    """An optimizer whose last batches queued 20 ms each (scored one after another)."""
    opt = dispatcher.Optimizer(max_latency=0.5)
    for _ in range(20):
        opt.log_outbound(n=16, wait=0.020, duration=0.004)
    opt.trigger_refresh()
    return opt


@pytest.mark.usefixtures("restore_optimizer")
def test_unbound_the_wait_is_the_burst_queueing() -> None:
    """What the bound is for: BentoML's own wait after a burst holds lone requests."""
    assert after_a_burst().wait == pytest.approx(0.020)


@pytest.mark.usefixtures("restore_optimizer")
@pytest.mark.parametrize("ms", [0.0, 2.5])
def test_the_learned_wait_never_exceeds_the_bound(ms: float) -> None:
    bound_batch_wait(ms)
    opt = after_a_burst()
    assert opt.wait == pytest.approx(ms / 1000)
    # its estimate of a batch's cost is BentoML's as before
    assert opt.o_a > 0


@pytest.mark.usefixtures("restore_optimizer")
def test_bound_again_replaces_the_bound_not_stacks_it() -> None:
    bound_batch_wait(1.0)
    bound_batch_wait(30.0)
    assert after_a_burst().wait == pytest.approx(0.020)  # 30 ms: the learned 20 ms stands
    bound_batch_wait(5.0)
    assert after_a_burst().wait == pytest.approx(0.005)


ROOT = Path(__file__).resolve().parents[2]


def test_the_setting_reaches_the_server_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """serving_env writes it; serving_runtime reads it back in the server process."""
    from crispops.config import load_settings, serving_runtime
    from crispops.serving.runtime import serving_env

    assert serving_env(load_settings(ROOT))["CRISPOPS_SERVING__MAX_BATCH_WAIT_MS"] == "0.0"
    monkeypatch.setenv("CRISPOPS_SERVING__MAX_BATCH_WAIT_MS", "4")
    env = serving_env(load_settings(ROOT))
    assert env["CRISPOPS_SERVING__MAX_BATCH_WAIT_MS"] == "4.0"
    assert serving_runtime().max_batch_wait_ms == 4.0


def test_a_negative_bound_is_refused_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from crispops.config import load_settings
    from crispops.errors import SettingsError

    monkeypatch.setenv("CRISPOPS_SERVING__MAX_BATCH_WAIT_MS", "-1")
    with pytest.raises(SettingsError, match=r"serving\.max_batch_wait_ms"):
        load_settings(ROOT)


def test_a_bentoml_without_that_batcher_serves_on_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr(dispatcher, "Optimizer")
    with caplog.at_level("WARNING", logger="crispops.serving"):
        bound_batch_wait(0.0)
    assert "max_batch_wait_ms not applied" in caplog.text
