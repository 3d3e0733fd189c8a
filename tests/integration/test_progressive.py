"""A challenger's canary on an HTTP Kubernetes API: 10 -> 50 -> 100 and promoted, rolled
back at its first step, or resumed after the process died mid-rollout.

The API server is kmock's KubernetesEmulator (see tests/integration/test_deploy.py for
what it does and does not do), not Kubernetes: no Kubernetes API server can run on
these machines. A FakeController per Deployment plays the Deployment controller. The
analysis is injected (the verdicts a test wants at each step); promotion and rejection
run the CLI's real hooks over a real project state: the models registry, the champion
pointer and a BentoML store holding both models.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crispops.champion import Champion, read_champion, write_champion
from crispops.cli.rollout import controller
from crispops.cluster.deploy import BENTO_ANNOTATION, deploy, render
from crispops.cluster.progressive import CHALLENGER_NAME, ROLLOUT_CONFIGMAP, RolloutState
from crispops.config import Settings, load_settings
from crispops.monitoring.analysis import Verdict
from crispops.registry import ModelEntry, Status, read_models, register
from tests.integration import test_deploy as kd

# the emulator's fixtures and helpers, shared with test_deploy
server = kd.server
api = kd.api
_namespaces_parse_fix = kd._namespaces_parse_fix
DEV, REGISTRY, FakeController = kd.DEV, kd.REGISTRY, kd.FakeController
RunningEmulator, deployment_path, get = kd.RunningEmulator, kd.deployment_path, kd.get

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NS = "crispops"
V1, V2 = "credit_default_v1:aaa111", "credit_default_v1:bbb222"
IMAGE_V1, IMAGE_V2 = f"{REGISTRY}/{V1}", f"{REGISTRY}/{V2}"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BentoML store with two tiny models (what packaging leaves), shared by the tests."""
    import joblib
    from sklearn.dummy import DummyClassifier

    from crispops.serving import packaging

    root = tmp_path_factory.mktemp("bentoml")
    packaging.bentoml_home(root)
    model = root / "model.joblib"
    joblib.dump(DummyClassifier().fit([[0], [1]], [0, 1]), model)
    for version in ("aaa111", "bbb222"):
        import bentoml

        with bentoml.models.create(
            bentoml.Tag("credit_default_v1", version),
            metadata={"candidate": "trees", "metrics": {"roc_auc": 0.8}, "numeric": ["x"]},
        ) as m:
            shutil.copyfile(model, m.path_of(packaging.MODEL_FILE))
    return root


@pytest.fixture()
def project(tmp_path: Path, store: Path) -> Settings:
    shutil.copy(ROOT / "crispops.toml", tmp_path / "crispops.toml")
    s = load_settings(tmp_path, rollout={"step_interval": "0s"})
    s.bentoml_home.parent.mkdir(parents=True, exist_ok=True)
    s.bentoml_home.symlink_to(store)
    champion = Champion(V1, V1, str(store / "x"), "linear", "roc_auc", 0.75)
    write_champion(s.champion_file, champion)
    register(s.models_file, ModelEntry(V1, V1, Status.CHAMPION.value, "roc_auc", 0.75))
    register(s.models_file, ModelEntry(V2, V2, Status.CHALLENGER.value, "roc_auc", 0.76))
    return s


@pytest.fixture()
def controllers(server: RunningEmulator) -> Iterator[None]:
    with (
        FakeController(server.url, NS, "crispops-model-service"),
        FakeController(server.url, NS, CHALLENGER_NAME),
    ):
        yield


def configmap(api: Any) -> dict[str, Any]:
    return get(api, f"/api/v1/namespaces/{NS}/configmaps/{ROLLOUT_CONFIGMAP}")


def champion_template(api: Any) -> dict[str, Any]:
    return dict(get(api, deployment_path(NS, "crispops-model-service"))["spec"]["template"])


def image(api: Any, name: str = "crispops-model-service") -> str:
    [c] = [
        c
        for c in get(api, deployment_path(NS, name))["spec"]["template"]["spec"]["containers"]
        if c["name"] == "model-service"
    ]
    return str(c["image"])


def gone(api: Any, path: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        get(api, path)
    except ApiException as exc:
        return exc.status == 404
    return False


class Script:
    """The analysis a test wants: one verdict per call; records the weight it saw live."""

    def __init__(self, api: Any, *verdicts: str | type[BaseException]) -> None:
        self.api = api
        self.verdicts = list(verdicts)
        self.weights: list[int] = []

    def __call__(self, state: RolloutState) -> Verdict:
        live = json.loads(configmap(self.api)["data"]["rollout.json"])
        assert live["weight"] == state.weight  # the cluster holds what the loop believes
        self.weights.append(live["weight"])
        what = self.verdicts.pop(0)
        if isinstance(what, type):
            raise what("killed")
        return Verdict(what, [f"scripted {what}"])  # type: ignore[arg-type]


def first_deploy(api: Any) -> dict[str, Any]:
    deploy(DEV, V1, REGISTRY, api, timeout_s=10, poll_s=0.05)
    return champion_template(api)


def test_a_good_challenger_goes_10_50_100_and_becomes_champion(
    api: Any, controllers: None, project: Settings
) -> None:
    first_deploy(api)
    script = Script(api, "pass", "pass")
    ctl = controller(project, DEV, REGISTRY, api, analysis=script)

    outcome = ctl.start(V1, V2, "canary", [10, 50, 100])

    assert outcome.phase == "promoted" and script.weights == [10, 50]
    cm = configmap(api)
    assert cm["metadata"]["annotations"]["crispops.dev/rollout-weight"] == "100"
    assert json.loads(cm["data"]["rollout.json"])["mode"] == "off"
    assert image(api) == IMAGE_V2  # the deploy's pinned image moved
    dep = get(api, deployment_path(NS, "crispops-model-service"))
    assert dep["metadata"]["annotations"][BENTO_ANNOTATION] == V2
    assert gone(api, deployment_path(NS, CHALLENGER_NAME))
    pointer = read_champion(project.champion_file)
    assert pointer is not None and pointer.bento_tag == V2 and pointer.candidate == "trees"
    statuses = {e.model_tag: e.status for e in read_models(project.models_file)}
    assert statuses == {V1: "retired", V2: "champion"}


def test_a_bad_challenger_is_rolled_back_at_its_first_step(
    api: Any, controllers: None, project: Settings
) -> None:
    before = first_deploy(api)
    policy_path = (
        f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/crispops-model-service"
    )
    policy_before = get(api, policy_path)["spec"]
    script = Script(api, "fail")
    ctl = controller(project, DEV, REGISTRY, api, analysis=script)

    outcome = ctl.start(V1, V2, "canary", [10, 50, 100])

    assert outcome.phase == "rolled-back" and script.weights == [10]
    config = json.loads(configmap(api)["data"]["rollout.json"])
    assert config["weight"] == 0 and config["mode"] == "off"
    assert champion_template(api) == before  # the previous objects, as they were
    assert get(api, policy_path)["spec"] == policy_before
    for path in (
        deployment_path(NS, CHALLENGER_NAME),
        f"/api/v1/namespaces/{NS}/services/{CHALLENGER_NAME}",
        f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/{CHALLENGER_NAME}",
    ):
        assert gone(api, path), path
    [rejected] = [e for e in read_models(project.models_file) if e.model_tag == V2]
    assert rejected.status == "rejected" and "scripted fail" in rejected.reason
    pointer = read_champion(project.champion_file)
    assert pointer is not None and pointer.bento_tag == V1


def test_a_rollout_killed_after_its_first_step_is_resumed_by_the_next_call(
    api: Any, controllers: None, project: Settings
) -> None:
    first_deploy(api)
    dying = Script(api, "pass", KeyboardInterrupt)  # the process dies at 50%
    with pytest.raises(KeyboardInterrupt):
        controller(project, DEV, REGISTRY, api, analysis=dying).start(
            V1, V2, "canary", [10, 50, 100]
        )
    ann = configmap(api)["metadata"]["annotations"]
    assert (ann["crispops.dev/rollout-phase"], ann["crispops.dev/rollout-step"]) == ("running", "1")
    assert image(api, CHALLENGER_NAME) == IMAGE_V2 and image(api) == IMAGE_V1

    # a new process, nothing in memory: the cluster's annotations say where it was
    script = Script(api, "pass")
    outcome = controller(project, DEV, REGISTRY, api, analysis=script).resume()

    assert outcome.phase == "promoted" and script.weights == [50]
    assert image(api) == IMAGE_V2
    pointer = read_champion(project.champion_file)
    assert pointer is not None and pointer.bento_tag == V2


def test_a_second_challenger_cannot_start_over_a_running_rollout(
    api: Any, controllers: None, project: Settings
) -> None:
    from crispops.errors import DeployError

    first_deploy(api)
    waiting = Script(api, "wait")
    outcome = controller(project, DEV, REGISTRY, api, analysis=waiting).start(
        V1, V2, "canary", [10, 50, 100]
    )
    assert outcome.phase == "running" and waiting.weights == [10]  # too few requests: stays
    with pytest.raises(DeployError, match="rollout resume"):
        controller(project, DEV, REGISTRY, api, analysis=waiting).start(
            V1, "credit_default_v1:ccc333", "canary", [10, 100]
        )
    assert render(DEV, None)  # the overlay itself is untouched
