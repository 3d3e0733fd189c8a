from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def select_champion(
    settings: str,
    models: Input[list[Model]],
    evaluations: Input[list[Artifact]],
    train: Input[Dataset],
    test: Input[Dataset],
    leaderboard: Output[Markdown],
    decision: Output[Artifact],
    champion: Output[Model],
) -> bool:
    """Pick the best candidate, then gate it: it must beat the trivial baseline (fitted on
    train), reach training.min_score and beat the current champion to be promoted. True
    packages it: as the champion when promoted, else as a challenger (it beat the
    baseline but not the champion); False when it is not worth serving at all."""
    from pathlib import Path

    from crispops.lifecycle import select_champion_task, task_started
    from crispops.step_settings import step_settings
    from crispops.steps.select_champion import NOT_WORTH_SERVING

    task_started()

    by_name = {m.metadata["candidate"]: (Path(m.path), dict(m.metadata)) for m in models}
    result = select_champion_task(
        step_settings(settings),
        [Path(e.path) for e in evaluations],
        by_name,
        Path(train.path),
        Path(test.path),
        Path(leaderboard.path),
        Path(decision.path),
        Path(champion.path),
    )
    champion.metadata.update(by_name[result.challenger][1])
    decision.metadata.update(result.to_dict())
    print(result.reason)
    return result.verdict not in NOT_WORTH_SERVING
