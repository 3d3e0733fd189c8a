"""The crispops command line: thin commands that load Settings and call the steps.

One module per command group; this module only puts them together. The order
below is the order ``crispops --help`` lists them in.
"""

from __future__ import annotations

import sys

import typer

from crispops.cli import cluster, features, monitor, pipeline, project, rollout, serving

app = typer.Typer(
    name="crispops",
    help="The CRISP-DM cycle as Kubeflow pipelines over a Feast feature store, served by BentoML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("init")(project.init)
app.command("demo")(project.demo)
app.command("demo-data")(project.demo_data)
app.add_typer(features.app, name="features")
app.command("compile")(pipeline.compile_)
app.command("run")(pipeline.run)
app.command("champion")(pipeline.champion)
app.command("models")(pipeline.models)
app.command("submit")(pipeline.submit)
app.command("serve")(serving.serve)
app.command("predict")(serving.predict)
app.command("feedback")(serving.feedback)
app.command("monitor")(monitor.monitor)
app.command("demo-cycle")(monitor.demo_cycle)
app.add_typer(cluster.images_app, name="images")
app.command("deploy")(cluster.deploy)
app.command("rollback")(cluster.rollback)
app.add_typer(rollout.app, name="rollout")


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        sys.exit(exc.code)


__all__ = ["app", "main"]
