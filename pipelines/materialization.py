"""Feast materialization as a pipeline: the same job the CronJob runs, for KFP schedules."""

from kfp import dsl

from components.materialize import materialize


@dsl.pipeline(
    name="crispops-materialization",
    description="Materialize the feature views into the online store.",
)
def materialization_pipeline(materialize_settings: str, config_file: str = ""):
    materialize(settings=materialize_settings, config_file=config_file).set_display_name(
        "materialize"
    )
