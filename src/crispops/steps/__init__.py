"""The lifecycle steps: pure logic, DataFrames and paths in, typed results out.

Nothing here imports kfp or bentoml. A step's name is the same word everywhere: the
module here, the component in ``components/``, the KFP task and the CLI's reports.
"""

from __future__ import annotations

import enum


class Step(enum.StrEnum):
    """The training pipeline's steps, in pipeline order (KFP task names)."""

    INGEST = "ingest"
    VALIDATE = "validate"
    EXPLORE = "explore"
    SPLIT = "split"
    SELECT_FEATURES = "select-features"
    TRAIN = "train"
    EVALUATE = "evaluate"
    SELECT_CHAMPION = "select-champion"
    PACKAGE = "package"
