"""`crispops.cluster.deploy` against an HTTP Kubernetes API: render, apply, roll out, roll back.

The API server here is kmock's KubernetesEmulator, an emulator, not Kubernetes:
no Kubernetes API server can run on these machines. The emulator listens on
127.0.0.1 (a free port, its own event loop in a background thread) and the code
under test talks to it over HTTP through a real ``kubernetes.client.ApiClient``.
What kmock 0.8 does, read from its source and checked here:

- it stores objects as plain JSON: create (POST), get, merge-patch (every PATCH,
  whatever its content type) and delete; no PUT, no server-side apply (an
  apply-patch of a missing object answers 404), no managedFields, no
  resourceVersion, no controllers and so no status;
- its URL parser takes ``/api/v1/namespaces`` and ``/api/v1/namespaces/<name>``
  for a namespace segment, so Namespace objects cannot be created or read (a 500
  and a 404). :func:`_parse_path` below fixes exactly those two URL shapes;
- it keeps no ``metadata.generation``. :class:`Emulator` adds what the real API
  server does: generation 1 on create, +1 whenever a write changes ``spec``.
  Without it a status written for an earlier spec would look like a finished
  rollout of the next one;
- it serves the discovery documents (``/api/v1``, ``/apis``,
  ``/apis/<group>/<version>``) only for the kinds it is told about.
  :class:`Emulator` loads kmock's bundled ones (the built-in kinds of a K3s
  cluster), so the deploy code discovers plurals and scopes through the
  kubernetes client's DynamicClient exactly as it does against a real server.

A rollout completes only when a test runs :class:`FakeController`, which plays
the Deployment controller by writing ``status`` for the latest generation.

The module is skipped when ``kubectl`` is missing, unless
``CRISPOPS_REQUIRE_SERVICES=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crispops.cluster.deploy import (
    BENTO_ANNOTATION,
    PREVIOUS_BENTO_ANNOTATION,
    PREVIOUS_IMAGE_ANNOTATION,
    PREVIOUS_TEMPLATE_ANNOTATION,
    REVISION_ANNOTATION,
    ApplyStrategy,
    DeployError,
    apply,
    bento_image,
    deploy,
    render,
    rollback,
    wait_for_rollout,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "manifests" / "overlays" / "dev"
REQUIRE_SERVICES = os.environ.get("CRISPOPS_REQUIRE_SERVICES") == "1"

if shutil.which("kubectl") is None:
    if REQUIRE_SERVICES:
        pytest.fail(
            "kubectl is required to render manifests/overlays (CRISPOPS_REQUIRE_SERVICES=1)",
            pytrace=False,
        )
    pytest.skip("kubectl not found: cannot render the kustomize overlays", allow_module_level=True)

import kmock  # noqa: E402
from kmock._internal import dicts as kmock_dicts  # noqa: E402
from kmock._internal import parsing as kmock_parsing  # noqa: E402
from kubernetes import client  # noqa: E402

REGISTRY = "ghcr.io/crispops"
TAG_V1 = "credit_default_v1:aaa111"
TAG_V2 = "credit_default_v1:bbb222"
IMAGE_V1 = f"{REGISTRY}/credit_default_v1:aaa111"
IMAGE_V2 = f"{REGISTRY}/credit_default_v1:bbb222"


# the emulator -----------------------------------------------------------------------------

_original_parse_path = kmock_parsing.parse_path


def _parse_path(path: str) -> Any:
    """kmock's parser, but ``/api/v1/namespaces[/<name>]`` is the cluster-scoped Namespace."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) in (3, 4):
        name = parts[3] if len(parts) == 4 else None
        return kmock_parsing.ParsedPath("", "v1", "namespaces", None, name, None)
    return _original_parse_path(path)


class Emulator(kmock.KubernetesEmulator):
    """kmock's KubernetesEmulator plus discovery and ``metadata.generation``, as on a server."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()  # a real cluster's discovery of the built-in kinds

    async def _handle(self, request: Any) -> Any:
        data = request.data
        if request.resource is not None and isinstance(data, dict) and not request.subresource:
            if request.action == kmock.action.CREATE:
                data.setdefault("metadata", {})["generation"] = 1
            elif request.action == kmock.action.UPDATE and request.name:
                key = (request.resource, request.namespace, request.name)
                if key in self.objects and not self.objects[key].deleted:
                    live = self.objects[key].raw
                    merged = kmock_dicts.patch_dict(live, data)
                    if merged.get("spec") != live.get("spec"):
                        generation = (live.get("metadata") or {}).get("generation") or 0
                        data.setdefault("metadata", {})["generation"] = generation + 1
        return await super()._handle(request)


class RunningEmulator:
    """The emulator served on 127.0.0.1 from its own event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.emulator: Emulator
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="kmock-emulator", daemon=True)
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the kmock emulator did not start within 30 s")
        if self._error is not None:
            raise RuntimeError(f"the kmock emulator failed to start: {self._error!r}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with Emulator() as emulator, kmock.Server(emulator, host="127.0.0.1") as server:
            self.emulator = emulator
            self.port = server.port
            self._started.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._stop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    # What the emulator holds and was asked (read between requests, never during one).
    def requests(self) -> list[Any]:
        return list(self.emulator)

    def writes(self) -> list[Any]:
        return [r for r in self.requests() if r.method in ("POST", "PATCH", "PUT", "DELETE")]

    def stored(self) -> dict[tuple[str, str | None, str], dict[str, Any]]:
        out = {}
        for (resource, namespace, name), obj in self.emulator.objects.items():
            if not obj.deleted:
                key = (f"{resource.group}/{resource.version}/{resource.plural}", namespace, name)
                out[key] = copy.deepcopy(obj.raw)
        return out

    def versions(self) -> dict[tuple[str, str | None, str], int]:
        return {
            (f"{res.group}/{res.version}/{res.plural}", ns, name): len(obj.history)
            for (res, ns, name), obj in self.emulator.objects.items()
        }


@pytest.fixture(scope="module")
def _namespaces_parse_fix() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kmock_parsing, "parse_path", _parse_path)
        yield


@pytest.fixture()
def server(_namespaces_parse_fix: None) -> Iterator[RunningEmulator]:
    running = RunningEmulator()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture()
def api(server: RunningEmulator) -> Iterator[client.ApiClient]:
    api_client = client.ApiClient(client.Configuration(host=server.url))
    try:
        yield api_client
    finally:
        api_client.close()


def get(api: client.ApiClient, path: str) -> dict[str, Any]:
    resp = api.call_api(
        path,
        "GET",
        header_params={"Accept": "application/json"},
        _return_http_data_only=True,
        _preload_content=False,
    )
    return dict(yaml.safe_load(resp.data))


def deployment_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


def object_path(obj: dict[str, Any]) -> str:
    plural = {
        "Namespace": "namespaces",
        "ServiceAccount": "serviceaccounts",
        "ConfigMap": "configmaps",
        "PersistentVolumeClaim": "persistentvolumeclaims",
        "Service": "services",
        "Deployment": "deployments",
        "StatefulSet": "statefulsets",
        "CronJob": "cronjobs",
        "PodDisruptionBudget": "poddisruptionbudgets",
        "HorizontalPodAutoscaler": "horizontalpodautoscalers",
        "NetworkPolicy": "networkpolicies",
    }[obj["kind"]]
    group_version = obj["apiVersion"]
    base = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
    namespace = obj["metadata"].get("namespace")
    ns = f"/namespaces/{namespace}" if namespace and obj["kind"] != "Namespace" else ""
    return f"{base}{ns}/{plural}/{obj['metadata']['name']}"


def model_deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [dep] = [
        o for o in objects if o["kind"] == "Deployment" and "model-service" in o["metadata"]["name"]
    ]
    return dep


@pytest.fixture(scope="module")
def dev_objects() -> list[dict[str, Any]]:
    return render(DEV, None)


@pytest.fixture(scope="module")
def model_ref(dev_objects: list[dict[str, Any]]) -> tuple[str, str]:
    dep = model_deployment(dev_objects)
    return dep["metadata"]["namespace"], dep["metadata"]["name"]


def model_image(api: client.ApiClient, ref: tuple[str, str]) -> str:
    dep = get(api, deployment_path(*ref))
    [container] = [
        c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "model-service"
    ]
    return str(container["image"])


def crispops_annotations(api: client.ApiClient, ref: tuple[str, str]) -> dict[str, str]:
    annotations = get(api, deployment_path(*ref))["metadata"].get("annotations") or {}
    return {k: v for k, v in annotations.items() if k.startswith("crispops.dev/")}


class FakeController:
    """Plays the Deployment controller: reports every new generation as rolled out."""

    def __init__(self, url: str, namespace: str, name: str) -> None:
        self.api = client.ApiClient(client.Configuration(host=url))
        self.path = deployment_path(namespace, name)
        self.rollouts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-controller", daemon=True)

    def __enter__(self) -> FakeController:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.api.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            # not created yet, or the emulator is stopping: try again
            with contextlib.suppress(Exception):
                self._step()
            self._stop.wait(0.05)

    def _step(self) -> None:
        dep = get(self.api, self.path)
        generation = dep["metadata"].get("generation")
        status = dep.get("status") or {}
        if generation is None or status.get("observedGeneration") == generation:
            return
        replicas = dep["spec"].get("replicas", 1)
        self.api.call_api(
            self.path + "/status",
            "PATCH",
            header_params={"Content-Type": "application/merge-patch+json"},
            body={
                "status": {
                    "observedGeneration": generation,
                    "replicas": replicas,
                    "updatedReplicas": replicas,
                    "readyReplicas": replicas,
                    "availableReplicas": replicas,
                }
            },
            _preload_content=False,
        )
        self.rollouts += 1


def without_status(objects: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {k: {f: v for f, v in o.items() if f != "status"} for k, o in objects.items()}


_MISSING = object()


def diff_paths(a: Any, b: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys()):
            yield from diff_paths(a.get(key, _MISSING), b.get(key, _MISSING), (*prefix, key))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from diff_paths(x, y, (*prefix, i))
    elif a != b:
        yield prefix


# 1-2: apply -------------------------------------------------------------------------------


def test_first_apply_creates_every_object(
    server: RunningEmulator, api: client.ApiClient, dev_objects: list[dict[str, Any]]
) -> None:
    results = apply(copy.deepcopy(dev_objects), api)

    assert [(r.kind, r.name) for r in results] == [
        (o["kind"], o["metadata"]["name"]) for o in dev_objects
    ]
    assert {r.action for r in results} == {"created"}
    # auto: the emulator answered the first server-side apply with 404, so merge it is
    assert {r.strategy for r in results} == {ApplyStrategy.MERGE}
    applies = [r for r in server.requests() if "apply-patch" in r.headers.get("Content-Type", "")]
    assert len(applies) == 1
    assert [r.method for r in server.writes()].count("POST") == len(dev_objects)
    assert len(server.stored()) == len(dev_objects)
    for obj in dev_objects:
        stored = get(api, object_path(obj))
        stored["metadata"].pop("generation")  # the server's own field
        assert stored == obj, obj["metadata"]["name"]
    namespace = get(api, "/api/v1/namespaces/crispops")
    assert namespace["kind"] == "Namespace"


def test_second_apply_changes_nothing(
    server: RunningEmulator, api: client.ApiClient, dev_objects: list[dict[str, Any]]
) -> None:
    apply(copy.deepcopy(dev_objects), api)
    before, versions, writes = server.stored(), server.versions(), len(server.writes())

    results = apply(copy.deepcopy(dev_objects), api)

    assert {r.action for r in results} == {"unchanged"}
    assert len(results) == len(dev_objects)
    assert len(server.writes()) == writes  # not one POST or PATCH was sent
    assert server.versions() == versions  # no object got a new version
    assert server.stored() == before  # generations included


def test_apply_dry_run_writes_nothing(
    server: RunningEmulator, api: client.ApiClient, dev_objects: list[dict[str, Any]]
) -> None:
    results = apply(copy.deepcopy(dev_objects), api, dry_run=True)

    assert {r.action for r in results} == {"created"}
    assert all(r.dry_run for r in results)
    assert server.stored() == {}
    assert [r.method for r in server.writes()] == ["PATCH"]  # the apply probe, answered 404


def test_apply_reports_configured_and_patches_only_the_difference(
    server: RunningEmulator, api: client.ApiClient, dev_objects: list[dict[str, Any]]
) -> None:
    apply(copy.deepcopy(dev_objects), api)
    changed = copy.deepcopy(dev_objects)
    [cm] = [o for o in changed if o["metadata"]["name"].startswith("crispops-model-service-env")]
    cm["data"]["CRISPOPS_SERVING__PORT"] = "3001"
    writes = len(server.writes())

    results = apply(changed, api)

    assert [(r.name, r.action) for r in results if r.action != "unchanged"] == [
        (cm["metadata"]["name"], "configured")
    ]
    [patch] = server.writes()[writes:]
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert patch.data == {"data": {"CRISPOPS_SERVING__PORT": "3001"}}
    assert get(api, object_path(cm))["data"]["CRISPOPS_SERVING__PORT"] == "3001"


def test_apply_names_the_object_the_server_refuses(
    server: RunningEmulator, api: client.ApiClient, dev_objects: list[dict[str, Any]]
) -> None:
    [sa] = [o for o in dev_objects if o["kind"] == "ServiceAccount"][:1]
    server.emulator[f"post /api/v1/namespaces/{sa['metadata']['namespace']}/serviceaccounts"] << (
        kmock.KubernetesError(
            status=403,
            reason="Forbidden",
            message='serviceaccounts is forbidden: User "dev" cannot create resource',
        )
    )
    with pytest.raises(DeployError) as caught:
        apply(copy.deepcopy(dev_objects), api, strategy=ApplyStrategy.MERGE)
    message = str(caught.value)
    assert f"ServiceAccount {sa['metadata']['name']}" in message
    assert "403" in message and 'User "dev" cannot create resource' in message
    assert "Traceback" not in message

    server.emulator[f"patch {deployment_path('crispops', 'nope')}"] << kmock.KubernetesError(
        status=422, reason="Invalid", message="spec.replicas: Invalid value: -1"
    )
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nope", "namespace": "crispops"},
        "spec": {"replicas": 1},
    }
    apply([bad], api, strategy=ApplyStrategy.MERGE)
    bad["spec"]["replicas"] = -1
    with pytest.raises(
        DeployError,
        match=r"rejected Deployment nope in namespace crispops "
        r"\(422 Unprocessable Entity\): spec.replicas: Invalid value: -1",
    ):
        apply([bad], api, strategy=ApplyStrategy.MERGE)


def test_auto_uses_server_side_apply_where_the_server_tracks_field_managers(
    server: RunningEmulator, api: client.ApiClient
) -> None:
    """The request a real API server gets: apply-patch, fieldManager, force, dryRun.

    kmock merges an apply-patch like any PATCH, so this checks the request, not
    server-side apply itself.
    """
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "crispops"},
        "data": {"a": "1"},
    }
    managed = [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1"}]
    live = copy.deepcopy(cm)
    live["metadata"]["managedFields"] = managed  # what every real server records
    apply([live], api, strategy=ApplyStrategy.MERGE)
    writes = len(server.writes())

    want = copy.deepcopy(cm)
    want["data"]["a"] = "2"
    [done] = apply([want], api, field_manager="crispops-test")
    [again] = apply([want], api, field_manager="crispops-test")
    dry_want = copy.deepcopy(want)
    dry_want["data"]["a"] = "3"
    # last: kmock ignores dryRun=All and merges the body all the same
    [dry] = apply([dry_want], api, field_manager="crispops-test", dry_run=True)

    assert (done.strategy, done.action) == (ApplyStrategy.SERVER_SIDE, "configured")
    assert (again.strategy, again.action) == (ApplyStrategy.SERVER_SIDE, "unchanged")
    assert (dry.strategy, dry.action, dry.dry_run) == (
        ApplyStrategy.SERVER_SIDE,
        "configured",
        True,
    )
    patches = server.writes()[writes:]
    assert [r.method for r in patches] == ["PATCH"] * 3
    for request, body in zip(patches, [want, want, dry_want], strict=True):
        assert request.headers["Content-Type"] == "application/apply-patch+yaml"
        assert request.url.path == "/api/v1/namespaces/crispops/configmaps/settings"
        assert request.params["fieldManager"] == "crispops-test"
        assert request.params["force"] == "true"
        assert request.data == body
    assert "dryRun" not in patches[0].params and "dryRun" not in patches[1].params
    assert patches[2].params["dryRun"] == "All"


# 3-6: deploy, rollout, rollback ---------------------------------------------------------------


def test_ready_rollout_succeeds(
    server: RunningEmulator, api: client.ApiClient, model_ref: tuple[str, str]
) -> None:
    with FakeController(server.url, *model_ref) as controller:
        result = deploy(DEV, TAG_V1, REGISTRY, api, timeout_s=20, poll_s=0.05)
        assert controller.rollouts >= 1

    assert result.image == IMAGE_V1 == bento_image(REGISTRY, TAG_V1)
    assert result.revision == 1 and result.previous_image is None
    assert {r.action for r in result.results} == {"created"}
    assert model_image(api, model_ref) == IMAGE_V1
    assert crispops_annotations(api, model_ref) == {
        REVISION_ANNOTATION: "1",
        BENTO_ANNOTATION: TAG_V1,
    }
    assert wait_for_rollout(api, model_ref[1], model_ref[0], timeout_s=1, poll_s=0.05)


def test_wait_for_rollout_follows_generation_and_replicas(
    server: RunningEmulator,
    api: client.ApiClient,
    dev_objects: list[dict[str, Any]],
    model_ref: tuple[str, str],
) -> None:
    apply(copy.deepcopy(dev_objects), api)
    namespace, name = model_ref
    started = time.monotonic()
    assert not wait_for_rollout(api, name, namespace, timeout_s=0.5, poll_s=0.05)
    assert 0.5 <= time.monotonic() - started < 3

    status_path = deployment_path(namespace, name) + "/status"

    def set_status(**status: int) -> None:
        api.call_api(
            status_path,
            "PATCH",
            header_params={"Content-Type": "application/merge-patch+json"},
            body={"status": status},
            _preload_content=False,
        )

    set_status(observedGeneration=1, replicas=1, updatedReplicas=1, availableReplicas=0)
    assert not wait_for_rollout(api, name, namespace, timeout_s=0.2, poll_s=0.05)
    set_status(observedGeneration=1, replicas=1, updatedReplicas=1, availableReplicas=1)
    assert wait_for_rollout(api, name, namespace, timeout_s=0.2, poll_s=0.05)
    # a new spec: generation 2, the status still describes generation 1
    changed = copy.deepcopy(dev_objects)
    model_deployment(changed)["spec"]["template"]["spec"]["containers"][0]["image"] = IMAGE_V2
    apply(changed, api)
    assert get(api, deployment_path(namespace, name))["metadata"]["generation"] == 2
    assert not wait_for_rollout(api, name, namespace, timeout_s=0.2, poll_s=0.05)


def test_new_bento_patches_only_the_model_service_image(
    server: RunningEmulator, api: client.ApiClient, model_ref: tuple[str, str]
) -> None:
    with FakeController(server.url, *model_ref):
        deploy(DEV, TAG_V1, REGISTRY, api, timeout_s=20, poll_s=0.05)
        before = without_status(server.stored())
        writes = len(server.writes())
        result = deploy(DEV, TAG_V2, REGISTRY, api, timeout_s=20, poll_s=0.05)
    after = without_status(server.stored())

    namespace, name = model_ref
    key = ("apps/v1/deployments", namespace, name)
    changes = {(k, path) for k in after for path in diff_paths(before.get(k), after[k])}
    image_path = next(
        ("spec", "template", "spec", "containers", i, "image")
        for i, c in enumerate(after[key]["spec"]["template"]["spec"]["containers"])
        if c["name"] == "model-service"
    )
    assert changes == {
        (key, image_path),
        (key, ("metadata", "generation")),  # the emulator's: the spec changed
        (key, ("metadata", "annotations", REVISION_ANNOTATION)),
        (key, ("metadata", "annotations", BENTO_ANNOTATION)),
        (key, ("metadata", "annotations", PREVIOUS_IMAGE_ANNOTATION)),
        (key, ("metadata", "annotations", PREVIOUS_TEMPLATE_ANNOTATION)),
        (key, ("metadata", "annotations", PREVIOUS_BENTO_ANNOTATION)),
    }
    assert before.keys() == after.keys()
    # one PATCH for the Deployment (the fake controller's status PATCHes aside)
    ours = [r for r in server.writes()[writes:] if not str(r.url.path).endswith("/status")]
    assert [(r.method, r.url.path) for r in ours] == [("PATCH", deployment_path(*model_ref))]
    assert result.previous_image == IMAGE_V1 and result.revision == 2
    assert crispops_annotations(api, model_ref) == {
        REVISION_ANNOTATION: "2",
        BENTO_ANNOTATION: TAG_V2,
        PREVIOUS_BENTO_ANNOTATION: TAG_V1,
        PREVIOUS_IMAGE_ANNOTATION: IMAGE_V1,
        PREVIOUS_TEMPLATE_ANNOTATION: after[key]["metadata"]["annotations"][
            PREVIOUS_TEMPLATE_ANNOTATION
        ],
    }
    previous = yaml.safe_load(after[key]["metadata"]["annotations"][PREVIOUS_TEMPLATE_ANNOTATION])
    assert previous == before[key]["spec"]["template"]


def test_redeploying_the_same_bento_changes_nothing(
    server: RunningEmulator, api: client.ApiClient, model_ref: tuple[str, str]
) -> None:
    with FakeController(server.url, *model_ref):
        deploy(DEV, TAG_V1, REGISTRY, api, timeout_s=20, poll_s=0.05)
        before = without_status(server.stored())
        result = deploy(DEV, TAG_V1, REGISTRY, api, timeout_s=20, poll_s=0.05)

    assert {r.action for r in result.results} == {"unchanged"}
    assert result.revision == 1 and not result.changed
    assert without_status(server.stored()) == before


def test_rollout_that_never_becomes_ready_is_rolled_back(
    server: RunningEmulator, api: client.ApiClient, model_ref: tuple[str, str]
) -> None:
    with FakeController(server.url, *model_ref):
        deploy(DEV, TAG_V1, REGISTRY, api, timeout_s=20, poll_s=0.05)
    good = without_status(server.stored())
    annotations_v1 = crispops_annotations(api, model_ref)

    started = time.monotonic()
    with pytest.raises(DeployError) as caught:  # no controller: the status never catches up
        deploy(DEV, TAG_V2, REGISTRY, api, timeout_s=2, poll_s=0.1)
    elapsed = time.monotonic() - started

    message = str(caught.value)
    assert 2 <= elapsed < 10
    assert f"rollout of {IMAGE_V2}" in message and "within 2s" in message
    assert f"rolled Deployment {model_ref[1]} in namespace {model_ref[0]} back to {IMAGE_V1}" in (
        message
    )
    assert model_image(api, model_ref) == IMAGE_V1
    assert crispops_annotations(api, model_ref) == annotations_v1  # history as before
    restored = without_status(server.stored())
    dep_key = ("apps/v1/deployments", *model_ref)
    for k in good:
        if k != dep_key:
            assert restored[k] == good[k]
    good_dep, restored_dep = good[dep_key], restored[dep_key]
    assert restored_dep["spec"] == good_dep["spec"]
    assert restored_dep["metadata"]["annotations"] == good_dep["metadata"]["annotations"]
    assert restored_dep["metadata"]["generation"] == good_dep["metadata"]["generation"] + 2


def test_first_deploy_that_never_becomes_ready_has_nothing_to_roll_back_to(
    api: client.ApiClient, model_ref: tuple[str, str]
) -> None:
    with pytest.raises(DeployError, match="no previous revision to roll back to"):
        deploy(DEV, TAG_V1, REGISTRY, api, timeout_s=0.5, poll_s=0.1)
    assert model_image(api, model_ref) == IMAGE_V1


def test_rollback(
    server: RunningEmulator, api: client.ApiClient, model_ref: tuple[str, str]
) -> None:
    namespace, name = model_ref
    with pytest.raises(
        DeployError,
        match=f"Deployment {name} in namespace {namespace} does not exist: nothing to roll back",
    ):
        rollback(DEV, api)

    with FakeController(server.url, *model_ref):
        deploy(DEV, TAG_V1, REGISTRY, api, timeout_s=20, poll_s=0.05)
        with pytest.raises(DeployError) as caught:
            rollback(DEV, api)
        assert "has no previous revision to roll back to" in str(caught.value)
        assert PREVIOUS_TEMPLATE_ANNOTATION in str(caught.value)

        deploy(DEV, TAG_V2, REGISTRY, api, timeout_s=20, poll_s=0.05)
        assert model_image(api, model_ref) == IMAGE_V2

        assert rollback(DEV, api) == IMAGE_V1
        assert model_image(api, model_ref) == IMAGE_V1
        assert wait_for_rollout(api, name, namespace, timeout_s=5, poll_s=0.05)
        annotations = crispops_annotations(api, model_ref)
        assert annotations[REVISION_ANNOTATION] == "3"
        assert annotations[BENTO_ANNOTATION] == TAG_V1
        assert annotations[PREVIOUS_IMAGE_ANNOTATION] == IMAGE_V2
        assert annotations[PREVIOUS_BENTO_ANNOTATION] == TAG_V2

        assert rollback(DEV, api) == IMAGE_V2  # undoing the rollback
        assert model_image(api, model_ref) == IMAGE_V2
        assert crispops_annotations(api, model_ref)[REVISION_ANNOTATION] == "4"


# 7-8: dry run, unreachable server -----------------------------------------------------------


def test_dry_run_returns_the_manifests_and_creates_nothing(
    server: RunningEmulator, api: client.ApiClient, dev_objects: list[dict[str, Any]]
) -> None:
    result = deploy(DEV, TAG_V2, REGISTRY, api, dry_run=True)

    assert result.dry_run and result.results == [] and result.image == IMAGE_V2
    docs = [d for d in yaml.safe_load_all(result.manifests) if d]
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        (o["kind"], o["metadata"]["name"]) for o in dev_objects
    ]
    dep = model_deployment(docs)
    images = {c["image"] for c in dep["spec"]["template"]["spec"]["containers"]}
    assert images == {IMAGE_V2}
    every_image = [
        c["image"]
        for d in docs
        for pod in [d.get("spec", {}).get("template", {}).get("spec", {})]
        for c in pod.get("containers", [])
    ]
    assert IMAGE_V2 in every_image
    assert not [i for i in every_image if i.endswith(":latest") or ":" not in i.rsplit("/", 1)[-1]]
    assert server.requests() == []  # the API server was not contacted
    assert server.stored() == {}


def test_unreachable_api_server_is_a_clear_error() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    api_client = client.ApiClient(client.Configuration(host=host))
    try:
        with pytest.raises(DeployError) as caught:
            deploy(DEV, TAG_V1, REGISTRY, api_client, timeout_s=1)
        with pytest.raises(DeployError, match="cannot reach the Kubernetes API"):
            rollback(DEV, api_client)
    finally:
        api_client.close()
    message = str(caught.value)
    assert message.startswith(f"cannot reach the Kubernetes API at {host}: ")
    assert "Connection refused" in message
    assert "<urllib3" not in message and "object at 0x" not in message
