"""Feast materialization as a pipeline: each view's window cut into chunks, read from the
offline store in parallel tasks, written to the online store oldest first (see
crispops.steps.chunks for why the writes keep that order)."""

from kfp import dsl

from components.plan_chunks import plan_chunks
from components.read_chunk import read_chunk
from components.write_chunks import write_chunks


@dsl.pipeline(
    name="crispops-materialization",
    description="Materialize the feature views into the online store, in parallel chunks.",
)
def materialization_pipeline(materialize_settings: str, config_file: str = "", end: str = ""):
    # end: an ISO 8601 time; "" materializes up to the moment the plan is made.
    planned = plan_chunks(settings=materialize_settings, config_file=config_file, end=end)
    planned.set_display_name("plan-chunks")
    with dsl.ParallelFor(planned.output, parallelism=2) as chunk:
        read = read_chunk(settings=materialize_settings, chunk=chunk, config_file=config_file)
        read.set_display_name("read-chunk")
    write_chunks(
        settings=materialize_settings,
        chunks=dsl.Collected(read.outputs["rows"]),
        config_file=config_file,
    ).set_display_name("write-chunks")
