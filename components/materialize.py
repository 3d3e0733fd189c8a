from kfp import dsl

from crispops.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def materialize(config: str, config_file: str = "") -> str:
    """Load the latest feature values into the online store, incrementally."""
    from crispops.config import Settings
    from crispops.lifecycle import materialize_task

    result = materialize_task(Settings.from_json(config), config_file or None)
    print(result)
    return result
