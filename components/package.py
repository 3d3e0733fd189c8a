from kfp import dsl
from kfp.dsl import Artifact, Input, Model

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def package(
    settings: str,
    run_id: str,
    champion: Input[Model],
    decision: Input[Artifact],
    profile: Input[Artifact],
    contract: Input[Artifact],
) -> str:
    """Save the model in BentoML's store, build its Bento, register it: champion when
    promoted (the pointer moves), else challenger."""
    from pathlib import Path

    from crispops.lifecycle import package_task, packaged_note, task_started
    from crispops.step_settings import step_settings

    task_started()

    result = package_task(
        step_settings(settings),
        model_file=Path(champion.path),
        decision_file=Path(decision.path),
        profile_file=Path(profile.path),
        run_id=run_id,
        contract_file=Path(contract.path),
    )
    print(packaged_note(result, run_id))
    return result.bento_tag
