"""The monitoring pipeline: one window of the prediction log judged against the champion
(drift, realized metrics, the retraining policy), for KFP schedules."""

from kfp import dsl

from components.monitor import monitor


@dsl.pipeline(
    name="crispops-monitoring",
    description="Watch the served model: drift and realized metrics over a window of the "
    "prediction log; retrain when the policy says so.",
)
def monitoring_pipeline(config: str, window: str = "", end: str = "", act: bool = True):
    # end: empty is "now" (a schedule); an ISO 8601 time judges a past window.
    monitor(config=config, window=window, end=end, act=act).set_display_name("monitor")
