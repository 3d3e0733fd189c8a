"""`crispops.cluster.deploy` without an API server: Bento images, rendering, rollout status.

Rendering runs the real ``kubectl kustomize`` over ``manifests/overlays``; those
tests are skipped when ``kubectl`` is missing, unless ``CRISPOPS_REQUIRE_SERVICES=1``
(CI), where that is a failure.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from crispops.cluster.apply import _merge_patch, covers
from crispops.cluster.deploy import (
    DeployError,
    deploy,
    render,
    rollout_complete,
)
from crispops.cluster.images import bento_image
from crispops.cluster.images import image_name as _image_name

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ROOT / "manifests" / "overlays"
REQUIRE_SERVICES = os.environ.get("CRISPOPS_REQUIRE_SERVICES") == "1"


@pytest.fixture()
def kubectl() -> None:
    if shutil.which("kubectl") is None:
        message = "kubectl not found: cannot render the kustomize overlays"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (CRISPOPS_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(message)


# bento_image ---------------------------------------------------------------------------------


def test_bento_image_is_registry_name_version() -> None:
    assert (
        bento_image("ghcr.io/crispops", "credit_default_v1:abc123")
        == "ghcr.io/crispops/credit_default_v1:abc123"
    )
    assert bento_image("localhost:5000/ml/", "m:v1") == "localhost:5000/ml/m:v1"


@pytest.mark.parametrize(
    ("tag", "why"),
    [
        ("credit_default_v1", "must be name:version"),
        ("credit_default_v1:", "must be name:version"),
        (":abc123", "must be name:version"),
        ("credit_default_v1:latest", "never :latest"),
        ("credit_default_v1:LATEST", "never :latest"),
        ("Credit:abc123", "not a valid image name"),
        ("credit:abc/123", "not a valid image tag"),
    ],
)
def test_bento_image_rejects_unpinned_or_malformed_tags(tag: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        bento_image("ghcr.io/crispops", tag)
    assert repr(tag) in str(caught.value)


def test_bento_image_rejects_an_empty_registry() -> None:
    with pytest.raises(ValueError, match="registry"):
        bento_image(" / ", "m:v1")


def test_image_name_drops_tag_and_digest() -> None:
    assert _image_name("ghcr.io/a/b:1.0") == "ghcr.io/a/b"
    assert _image_name("localhost:5000/b") == "localhost:5000/b"
    assert _image_name("localhost:5000/b:2@sha256:" + "0" * 64) == "localhost:5000/b"
    assert _image_name("crispops-model-service") == "crispops-model-service"


# render --------------------------------------------------------------------------------------


def _images(objects: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    out = []
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        pod = (spec.get("template") or {}).get("spec") or {}
        for key in ("initContainers", "containers"):
            for c in pod.get(key) or []:
                out.append((obj["kind"], obj["metadata"]["name"], c["name"], c["image"]))
    return out


def _without_images(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(objects)
    for obj in out:
        spec = obj.get("spec") or {}
        if obj["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        pod = (spec.get("template") or {}).get("spec") or {}
        for key in ("initContainers", "containers"):
            for c in pod.get(key) or []:
                c["image"] = ""
    return out


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_render_sets_the_image_on_the_model_service_only(kubectl: None, overlay: str) -> None:
    image = "registry.example/credit_default_v1:abc123"
    plain = render(OVERLAYS / overlay)
    pinned = render(OVERLAYS / overlay, image)

    changed = [
        (new, old) for new, old in zip(_images(pinned), _images(plain), strict=True) if new != old
    ]
    assert changed, "the model-service image was not set"
    for new, old in changed:
        assert new[:3] == old[:3]
        assert (new[0], new[1]) == ("Deployment", "crispops-model-service")
        assert new[3] == image
        assert _image_name(old[3]).endswith("crispops-model-service")
    assert _without_images(plain) == _without_images(pinned)  # nothing else differs


def test_render_error_names_the_overlay(kubectl: None, tmp_path: Path) -> None:
    with pytest.raises(DeployError, match=f"overlay {tmp_path} has no kustomization.yaml"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(DeployError, match=f"kubectl kustomize failed for overlay {tmp_path}: "):
        render(tmp_path)


def test_render_without_the_model_service_refuses_to_set_an_image(
    kubectl: None, tmp_path: Path
) -> None:
    (tmp_path / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: '1'\n"
    )
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - cm.yaml\n")
    assert [o["kind"] for o in render(tmp_path)] == ["ConfigMap"]
    with pytest.raises(DeployError, match="renders no Deployment crispops-model-service"):
        render(tmp_path, "r/m:v1")


def test_render_without_kubectl_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DeployError, match="kubectl is not installed") as caught:
        render(OVERLAYS / "dev")
    assert str(OVERLAYS / "dev") in str(caught.value)


def test_dry_run_deploy_needs_no_api_server(kubectl: None) -> None:
    result = deploy(OVERLAYS / "dev", "credit_default_v1:abc123", "ghcr.io/crispops", None, 1, True)
    assert result.dry_run and result.results == []
    assert "image: ghcr.io/crispops/credit_default_v1:abc123" in result.manifests


def test_deploy_rejects_latest_before_contacting_anything() -> None:
    with pytest.raises(DeployError, match="never :latest"):
        deploy(OVERLAYS / "dev", "credit_default_v1:latest", "ghcr.io/crispops", None)


# rollout status and patches -----------------------------------------------------------------


def _dep(generation: int | None, spec_replicas: int | None, **status: int) -> dict[str, Any]:
    dep: dict[str, Any] = {"metadata": {}, "spec": {}, "status": status}
    if generation is not None:
        dep["metadata"]["generation"] = generation
    if spec_replicas is not None:
        dep["spec"]["replicas"] = spec_replicas
    return dep


@pytest.mark.parametrize(
    ("dep", "done"),
    [
        (
            _dep(2, 2, observedGeneration=2, replicas=2, updatedReplicas=2, availableReplicas=2),
            True,
        ),
        (
            _dep(
                None, None, observedGeneration=1, replicas=1, updatedReplicas=1, availableReplicas=1
            ),
            True,
        ),
        (
            _dep(3, 2, observedGeneration=2, replicas=2, updatedReplicas=2, availableReplicas=2),
            False,
        ),
        (
            _dep(2, 2, observedGeneration=2, replicas=3, updatedReplicas=2, availableReplicas=2),
            False,
        ),
        (
            _dep(2, 2, observedGeneration=2, replicas=2, updatedReplicas=1, availableReplicas=2),
            False,
        ),
        (
            _dep(2, 2, observedGeneration=2, replicas=2, updatedReplicas=2, availableReplicas=1),
            False,
        ),
        (_dep(1, 1), False),
    ],
)
def test_rollout_complete(dep: dict[str, Any], done: bool) -> None:
    assert rollout_complete(dep) is done


def test_merge_patch_sends_only_differences_and_keeps_server_fields() -> None:
    live = {
        "metadata": {"name": "d", "resourceVersion": "7", "labels": {"a": "1"}},
        "spec": {
            "replicas": 1,
            "template": {"spec": {"containers": [{"name": "c", "image": "i:1", "tty": False}]}},
        },
        "status": {"replicas": 1},
    }
    same = {
        "metadata": {"name": "d", "labels": {"a": "1"}},
        "spec": {
            "replicas": 1,
            "template": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}},
        },
    }
    assert covers(live, same)
    assert _merge_patch(live, same) == {}
    new = {
        "metadata": {"name": "d", "labels": {"a": "1", "b": "2"}},
        "spec": {
            "replicas": 1,
            "template": {"spec": {"containers": [{"name": "c", "image": "i:2"}]}},
        },
    }
    assert _merge_patch(live, new) == {
        "metadata": {"labels": {"b": "2"}},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i:2"}]}}},
    }
    assert _merge_patch({"a": {"x": 1, "y": 2}}, {"a": {"x": 1}}, exact=True) == {"a": {"y": None}}
