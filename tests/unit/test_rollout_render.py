"""The objects of a shadow/canary rollout, rendered from the real overlays (no API server):
every one passes the Kubernetes schemas and the restricted Pod Security policy, and the
champion's Service never selects the challenger's pods."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from crispops.cluster.progressive import (
    CHALLENGER_NAME,
    ROLLOUT_CONFIGMAP,
    ROLLOUT_MOUNT,
    RolloutState,
    rollout_objects,
)
from crispops.cluster.render import MODEL_SERVICE_DEPLOYMENT, render

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "prod")
CHAMPION = "ghcr.io/crispops/credit_default_v1:aaa111"
CHALLENGER = "ghcr.io/crispops/credit_default_v1:bbb222"

if shutil.which("kubectl") is None:
    if os.environ.get("CRISPOPS_REQUIRE_SERVICES") == "1":
        pytest.fail("kubectl is required (CRISPOPS_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip("kubectl not found: cannot render the overlays", allow_module_level=True)
kubernetes_validate = pytest.importorskip("kubernetes_validate")


def objects(env: str) -> list[dict[str, Any]]:
    state = RolloutState(
        "canary",
        [10, 50, 100],
        0,
        "credit_default_v1:aaa111",
        "credit_default_v1:bbb222",
        "crispops",
    )
    return rollout_objects(
        render(ROOT / "manifests" / "overlays" / env, CHAMPION), CHALLENGER, state
    )


def one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [obj] = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


@pytest.mark.parametrize("version", ["1.30", None])
@pytest.mark.parametrize("env", OVERLAYS)
def test_every_rollout_object_validates(env: str, version: str | None) -> None:
    from kubernetes_validate.utils import latest_version

    errors = []
    for obj in objects(env):
        try:
            kubernetes_validate.validate(obj, version or latest_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("env", OVERLAYS)
def test_both_model_deployments_are_restricted(env: str) -> None:
    objs = objects(env)
    for name in (MODEL_SERVICE_DEPLOYMENT, CHALLENGER_NAME):
        pod = one(objs, "Deployment", name)["spec"]["template"]["spec"]
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            csc = c["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False and csc["capabilities"]["drop"] == [
                "ALL"
            ]
            assert csc["readOnlyRootFilesystem"] is True
            assert c["resources"]["limits"] and c["readinessProbe"] and c["livenessProbe"]


@pytest.mark.parametrize("env", OVERLAYS)
def test_the_challenger_is_apart_and_the_champion_routes(env: str) -> None:
    objs = objects(env)
    champ = one(objs, "Deployment", MODEL_SERVICE_DEPLOYMENT)
    chall = one(objs, "Deployment", CHALLENGER_NAME)
    [image] = [c["image"] for c in chall["spec"]["template"]["spec"]["containers"]]
    assert image == CHALLENGER
    assert CHAMPION in [c["image"] for c in champ["spec"]["template"]["spec"]["containers"]]
    champion_selector = one(objs, "Service", MODEL_SERVICE_DEPLOYMENT)["spec"]["selector"]
    pod_labels = chall["spec"]["template"]["metadata"]["labels"]
    assert not set(champion_selector.items()) <= set(pod_labels.items())
    assert one(objs, "Service", CHALLENGER_NAME)["spec"]["selector"].items() <= pod_labels.items()
    mounts = [
        m["mountPath"]
        for c in champ["spec"]["template"]["spec"]["containers"]
        for m in c.get("volumeMounts", [])
    ]
    assert ROLLOUT_MOUNT in mounts
    config = json.loads(one(objs, "ConfigMap", ROLLOUT_CONFIGMAP)["data"]["rollout.json"])
    assert config["mode"] == "canary" and config["weight"] == 10
    assert config["challenger_url"].startswith(f"http://{CHALLENGER_NAME}.crispops.svc")
    policy = one(objs, "NetworkPolicy", MODEL_SERVICE_DEPLOYMENT)
    assert any(
        rule.get("to")
        == [{"podSelector": {"matchLabels": chall["spec"]["selector"]["matchLabels"]}}]
        for rule in policy["spec"]["egress"]
    )
