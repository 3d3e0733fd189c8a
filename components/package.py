from kfp import dsl
from kfp.dsl import Artifact, Input, Model

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def package(
    config: str,
    run_id: str,
    champion: Input[Model],
    decision: Input[Artifact],
    profile: Input[Artifact],
    contract: Input[Artifact],
) -> str:
    """Save the model in BentoML's store, build its Bento, register it: champion when
    promoted (the pointer moves), else challenger."""
    from pathlib import Path

    from crispops.config import Settings
    from crispops.lifecycle import package_task

    result = package_task(
        Settings.from_json(config),
        model_file=Path(champion.path),
        decision_file=Path(decision.path),
        profile_file=Path(profile.path),
        run_id=run_id,
        contract_file=Path(contract.path),
    )
    print(f"packaged {result.model_tag} in Bento {result.bento_tag}")
    return result.bento_tag
