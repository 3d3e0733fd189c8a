"""Deploy the champion's Bento to Kubernetes: render, apply, wait, roll back.

The deployable unit is the Bento tag the package step produced: ``name:version``
becomes the image ``<registry>/<name>:<version>`` (never ``:latest``), which is set on
the model-service containers of a kustomize overlay rendered with ``kubectl
kustomize``. The rendered objects are applied with the kubernetes client, the
model-service Deployment is watched until it has rolled out, and a rollout that
does not become ready in time is rolled back to the previous pod template.

Apply strategies (:class:`ApplyStrategy`):

``server-side``
    Server-side apply: ``PATCH`` with ``application/apply-patch+yaml``,
    ``fieldManager=crispops`` and ``force=true`` (kubectl's ``apply --server-side
    --force-conflicts``). The API server creates missing objects, merges by field
    ownership and prunes fields crispops applied before but no longer sends.
    ``dry_run`` is the server's ``dryRun=All``.
``merge``
    For servers without server-side apply (kmock's KubernetesEmulator, which
    stores objects as plain JSON and treats every ``PATCH`` as a JSON merge patch):
    ``GET``; ``POST`` when missing; otherwise ``PATCH`` with
    ``application/merge-patch+json`` carrying only the fields that differ, and no
    request at all when nothing differs. Fields the server added (defaults, status)
    are left alone; annotations under ``crispops.dev/`` are owned by crispops and
    removed when no longer sent. Fields dropped from the manifests are not pruned
    (server-side apply does that). ``dry_run`` sends no writes.
``auto`` (default)
    Decided from what the server shows: an existing object without
    ``metadata.managedFields`` (every API server since 1.18 records them on every
    write) means ``merge``; an existing object with them means ``server-side``; a
    missing object is server-side applied, and a 404 or 415 answer to that (a real
    server creates the object; kmock answers 404) switches to ``merge`` for the
    rest of the call. No object is ever written by a server-side apply that the
    server does not understand.

Rollback history lives on the model-service Deployment itself, written in the
same request as the change it records (no ReplicaSet history is needed, so it
works without controllers): ``crispops.dev/revision`` (a counter),
``crispops.dev/bento-tag``, and the state before the last change:
``crispops.dev/previous-image``, ``crispops.dev/previous-bento-tag`` and
``crispops.dev/previous-template`` (the whole previous pod template, as JSON).
A failed rollout re-applies the previous template and restores the annotations as
they were; :func:`rollback` swaps the current and previous templates (a second
rollback undoes the first, like ``kubectl rollout undo``).
"""

from __future__ import annotations

import copy
import enum
import json
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from crispops.cluster.images import bento_image, image_name
from crispops.errors import DeployError

__all__ = [
    "ANNOTATION_PREFIX",
    "BENTO_ANNOTATION",
    "FIELD_MANAGER",
    "MODEL_SERVICE_CONTAINER",
    "MODEL_SERVICE_DEPLOYMENT",
    "MODEL_SERVICE_IMAGE_NAME",
    "PREVIOUS_BENTO_ANNOTATION",
    "PREVIOUS_IMAGE_ANNOTATION",
    "PREVIOUS_TEMPLATE_ANNOTATION",
    "REVISION_ANNOTATION",
    "ApplyResult",
    "ApplyStrategy",
    "DeployError",
    "DeployResult",
    "apply",
    "bento_image",
    "deploy",
    "render",
    "rollback",
    "rollout_complete",
    "to_yaml",
    "wait_for_rollout",
]

MODEL_SERVICE_DEPLOYMENT = "crispops-model-service"
MODEL_SERVICE_CONTAINER = "model-service"
#: The image name the base manifests use; the overlays pin it with kustomize ``images:``.
MODEL_SERVICE_IMAGE_NAME = "crispops-model-service"
FIELD_MANAGER = "crispops"

ANNOTATION_PREFIX = "crispops.dev/"
REVISION_ANNOTATION = "crispops.dev/revision"
BENTO_ANNOTATION = "crispops.dev/bento-tag"
PREVIOUS_IMAGE_ANNOTATION = "crispops.dev/previous-image"
PREVIOUS_BENTO_ANNOTATION = "crispops.dev/previous-bento-tag"
PREVIOUS_TEMPLATE_ANNOTATION = "crispops.dev/previous-template"

RENDER_TIMEOUT_S = 120.0
#: (connect, read) timeout of each API request, seconds.
REQUEST_TIMEOUT_S = (10.0, 60.0)

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"

Action = Literal["created", "configured", "unchanged"]


class ApplyStrategy(enum.StrEnum):
    """How objects are written; see the module docstring."""

    AUTO = "auto"
    SERVER_SIDE = "server-side"
    MERGE = "merge"


@dataclass(frozen=True)
class ApplyResult:
    """What applying one object did (or would do, in a dry run)."""

    kind: str
    name: str
    namespace: str | None
    action: Action
    strategy: ApplyStrategy
    dry_run: bool = False

    def __str__(self) -> str:
        where = f" -n {self.namespace}" if self.namespace else ""
        suffix = " (dry run)" if self.dry_run else ""
        return f"{self.kind.lower()}/{self.name}{where} {self.action}{suffix}"


@dataclass(frozen=True)
class DeployResult:
    """The outcome of :func:`deploy`."""

    bento_tag: str
    image: str
    namespace: str
    deployment: str
    #: The rendered objects as YAML, with the Bento's image set.
    manifests: str
    dry_run: bool
    results: list[ApplyResult] = field(default_factory=list)
    #: The model-service image that ran before this deploy (None on the first one).
    previous_image: str | None = None
    #: The ``crispops.dev/revision`` now recorded (unchanged when nothing changed).
    revision: int | None = None

    @property
    def changed(self) -> bool:
        return any(r.action != "unchanged" for r in self.results)


# render -----------------------------------------------------------------------------------


def render(overlay_dir: Path, image: str | None = None) -> list[dict[str, Any]]:
    """Render a kustomize overlay with ``kubectl kustomize``; set ``image`` on the model service.

    With ``image``, every container (in any pod template of any object) that runs the
    model-service image gets it: the image of the ``model-service`` container of the
    ``crispops-model-service`` Deployment, and the base's ``crispops-model-service``
    placeholder, whatever tag they have.
    """
    overlay_dir = Path(overlay_dir)
    names = ("kustomization.yaml", "kustomization.yml", "Kustomization")
    if not any((overlay_dir / n).is_file() for n in names):
        raise DeployError(f"overlay {overlay_dir} has no kustomization.yaml")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise DeployError(
            f"cannot render overlay {overlay_dir}: kubectl is not installed or not on PATH "
            "(kubectl >= 1.27 renders kustomize overlays offline)"
        )
    try:
        proc = subprocess.run(
            [kubectl, "kustomize", str(overlay_dir)],
            capture_output=True,
            text=True,
            timeout=RENDER_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DeployError(
            f"rendering overlay {overlay_dir} took more than {RENDER_TIMEOUT_S:.0f}s"
        ) from exc
    except OSError as exc:
        raise DeployError(f"cannot run kubectl to render overlay {overlay_dir}: {exc}") from exc
    if proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip() or f"exit code {proc.returncode}"
        raise DeployError(f"kubectl kustomize failed for overlay {overlay_dir}: {detail}")
    try:
        docs = list(yaml.safe_load_all(proc.stdout))
    except yaml.YAMLError as exc:
        raise DeployError(f"overlay {overlay_dir} rendered invalid YAML: {exc}") from exc
    objects = [d for d in docs if d is not None]
    for obj in objects:
        if not isinstance(obj, dict) or not obj.get("kind") or not obj.get("apiVersion"):
            raise DeployError(f"overlay {overlay_dir} rendered a document that is not an object")
    if image is not None:
        _set_model_image(objects, image, overlay_dir)
    return objects


def to_yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    """Objects as one multi-document YAML text (what ``kubectl kustomize`` prints)."""
    return yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False)


def _pod_specs(obj: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind == "Pod":
        yield spec
    elif kind == "CronJob":
        pod = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get(
            "spec"
        )
        if isinstance(pod, dict):
            yield pod
    else:
        pod = (spec.get("template") or {}).get("spec") if isinstance(spec, dict) else None
        if isinstance(pod, dict):
            yield pod


def _containers(pod: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers"):
        for c in pod.get(key) or []:
            if isinstance(c, dict):
                yield c


def _find_deployment(objects: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    for obj in objects:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == "Deployment" and meta.get("name") == MODEL_SERVICE_DEPLOYMENT:
            return obj  # type: ignore[return-value]
    return None


def _model_container(template: Mapping[str, Any]) -> dict[str, Any] | None:
    containers = [c for c in (template.get("spec") or {}).get("containers") or [] if c]
    for c in containers:
        if c.get("name") == MODEL_SERVICE_CONTAINER:
            return c
    return containers[0] if len(containers) == 1 else None


def _template_image(template: Mapping[str, Any] | None) -> str | None:
    container = _model_container(template or {})
    return None if container is None else container.get("image")


def _set_model_image(objects: list[dict[str, Any]], image: str, overlay_dir: Path) -> None:
    if image.rsplit("/", 1)[-1].split("@", 1)[0].endswith(":latest"):
        raise DeployError(f"image {image!r} uses :latest; pin the Bento's version")
    deployment = _find_deployment(objects)
    if deployment is None:
        raise DeployError(
            f"overlay {overlay_dir} renders no Deployment {MODEL_SERVICE_DEPLOYMENT}: "
            "cannot set the model service image"
        )
    names = {MODEL_SERVICE_IMAGE_NAME}
    current = _template_image((deployment.get("spec") or {}).get("template") or {})
    if current:
        names.add(image_name(current))
    replaced = 0
    for obj in objects:
        for pod in _pod_specs(obj):
            for container in _containers(pod):
                if image_name(str(container.get("image", ""))) in names:
                    container["image"] = image
                    replaced += 1
    if replaced == 0:
        raise DeployError(
            f"overlay {overlay_dir}: Deployment {MODEL_SERVICE_DEPLOYMENT} has no container "
            f"named {MODEL_SERVICE_CONTAINER!r} running the {MODEL_SERVICE_IMAGE_NAME} image"
        )


# the Kubernetes API -------------------------------------------------------------------------

# (API group, kind) -> (plural, namespaced); anything else is looked up by discovery.
_KNOWN_KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("", "Namespace"): ("namespaces", False),
    ("", "ServiceAccount"): ("serviceaccounts", True),
    ("", "ConfigMap"): ("configmaps", True),
    ("", "Secret"): ("secrets", True),
    ("", "Service"): ("services", True),
    ("", "Pod"): ("pods", True),
    ("", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("", "PersistentVolume"): ("persistentvolumes", False),
    ("apps", "Deployment"): ("deployments", True),
    ("apps", "StatefulSet"): ("statefulsets", True),
    ("apps", "DaemonSet"): ("daemonsets", True),
    ("apps", "ReplicaSet"): ("replicasets", True),
    ("batch", "Job"): ("jobs", True),
    ("batch", "CronJob"): ("cronjobs", True),
    ("policy", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("autoscaling", "HorizontalPodAutoscaler"): ("horizontalpodautoscalers", True),
    ("networking.k8s.io", "NetworkPolicy"): ("networkpolicies", True),
    ("networking.k8s.io", "Ingress"): ("ingresses", True),
    ("rbac.authorization.k8s.io", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io", "RoleBinding"): ("rolebindings", True),
    ("rbac.authorization.k8s.io", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("storage.k8s.io", "StorageClass"): ("storageclasses", False),
    ("scheduling.k8s.io", "PriorityClass"): ("priorityclasses", False),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): ("customresourcedefinitions", False),
}


@dataclass(frozen=True)
class _Ref:
    """Where one object lives in the API."""

    api_version: str
    kind: str
    plural: str
    namespace: str | None
    name: str

    @property
    def _base(self) -> str:
        return _group_version_path(self.api_version)

    @property
    def collection(self) -> str:
        ns = f"/namespaces/{self.namespace}" if self.namespace else ""
        return f"{self._base}{ns}/{self.plural}"

    @property
    def path(self) -> str:
        return f"{self.collection}/{self.name}"

    def __str__(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.kind} {self.name}{where}"


def _group_version_path(api_version: str) -> str:
    """``v1`` → ``/api/v1``; ``apps/v1`` → ``/apis/apps/v1``."""
    return f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"


class _ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class _Kube:
    """JSON requests through a ``kubernetes.client.ApiClient`` (auth, TLS, proxy from it)."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = getattr(api_client, "api_client", api_client)
        self.host = str(getattr(self.api_client.configuration, "host", "?"))
        self._discovered: dict[str, list[dict[str, Any]]] = {}

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Sequence[tuple[str, str]] = (),
        content_type: str | None = None,
    ) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            resp = self.api_client.call_api(
                path,
                method,
                query_params=list(query),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        except ApiException as exc:
            if exc.status == 0:  # the client's own wrapper of TLS errors
                raise DeployError(
                    f"cannot reach the Kubernetes API at {self.host}: {exc.reason}"
                ) from exc
            raise _ApiError(int(exc.status), str(exc.reason), _status_message(exc.body)) from exc
        except (HTTPError, OSError) as exc:
            raise DeployError(
                f"cannot reach the Kubernetes API at {self.host}: {_short_reason(exc)}"
            ) from exc
        raw = resp.data
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise DeployError(
                f"the Kubernetes API at {self.host} answered {method} {path} with non-JSON"
            ) from exc
        return data if isinstance(data, dict) else {}

    def get(self, ref: _Ref) -> dict[str, Any] | None:
        try:
            return self.request("GET", ref.path)
        except _ApiError as exc:
            if exc.status == 404:
                return None
            raise _refused(ref, exc) from exc

    def ref(self, obj: Mapping[str, Any]) -> _Ref:
        api_version = str(obj.get("apiVersion") or "")
        kind = str(obj.get("kind") or "")
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not api_version or not kind or not name:
            raise DeployError(f"object without apiVersion/kind/metadata.name: {kind or obj!r}")
        group = api_version.rpartition("/")[0]
        known = _KNOWN_KINDS.get((group, kind))
        plural, namespaced = known if known else self._discover(api_version, kind)
        namespace = meta.get("namespace") if namespaced else None
        if namespaced and not namespace:
            raise DeployError(f"{kind} {name} has no metadata.namespace (set one in the overlay)")
        return _Ref(api_version, kind, plural, namespace, str(name))

    def _discover(self, api_version: str, kind: str) -> tuple[str, bool]:
        if api_version not in self._discovered:
            try:
                listing = self.request("GET", _group_version_path(api_version))
            except _ApiError as exc:
                raise DeployError(
                    f"the Kubernetes API at {self.host} does not serve {api_version} "
                    f"(needed for {kind}): {exc.message}"
                ) from exc
            self._discovered[api_version] = list(listing.get("resources") or [])
        for res in self._discovered[api_version]:
            if res.get("kind") == kind and "/" not in str(res.get("name", "")):
                return str(res["name"]), bool(res.get("namespaced"))
        raise DeployError(f"the Kubernetes API at {self.host} has no kind {kind} in {api_version}")


def _status_message(body: Any) -> str:
    """The ``message`` of a Kubernetes Status body, else the body itself (shortened)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return "no details"
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return str(body).strip()[:500]
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    return str(body).strip()[:500]


def _short_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    marker = "Failed to establish a new connection: "
    if marker in text:
        text = text.split(marker, 1)[1]
    return text.rstrip(")").strip() or type(exc).__name__


def _refused(ref: _Ref, exc: _ApiError) -> DeployError:
    what = {
        401: "rejected the credentials for",
        403: "forbids",
        404: "has no place for",
        409: "reports a conflict on",
        422: "rejected",
    }.get(exc.status, "failed on")
    return DeployError(
        f"the Kubernetes API {what} {ref} ({exc.status} {exc.reason}): {exc.message}"
    )


# apply ------------------------------------------------------------------------------------

_SERVER_META = ("resourceVersion", "managedFields", "generation", "uid", "creationTimestamp")


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object without what the server keeps for itself (status, versions, ownership)."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in (*_SERVER_META, "selfLink"):
            meta.pop(key, None)
    return out


def _covers(live: Any, desired: Any) -> bool:
    """Whether ``live`` already holds everything ``desired`` sets (extra live keys allowed)."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        return all(
            (k in live and _covers(live[k], v)) or (v is None and k not in live)
            for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(_covers(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


def _merge_patch(
    live: Mapping[str, Any], desired: Mapping[str, Any], exact: bool = False
) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) taking ``live`` to ``desired`` for the keys it sets.

    Lists are replaced whole when they differ. With ``exact``, keys of ``live`` that
    ``desired`` lacks are removed too.
    """
    patch: dict[str, Any] = {}
    for key, want in desired.items():
        have = live.get(key)
        if key not in live:
            if want is not None:
                patch[key] = want
        elif isinstance(want, Mapping) and isinstance(have, Mapping):
            sub = _merge_patch(have, want, exact)
            if sub:
                patch[key] = sub
        elif not (have == want if exact else _covers(have, want)):
            patch[key] = want
    if exact:
        for key in live:
            if key not in desired:
                patch[key] = None
    return patch


def _owned_annotation_removals(
    live: Mapping[str, Any], desired: Mapping[str, Any]
) -> dict[str, Any]:
    have = (live.get("metadata") or {}).get("annotations") or {}
    want = (desired.get("metadata") or {}).get("annotations") or {}
    return {k: None for k in have if k.startswith(ANNOTATION_PREFIX) and k not in want}


def _merge_into(patch: dict[str, Any], path: Sequence[str], value: dict[str, Any]) -> None:
    node = patch
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node.setdefault(path[-1], {}).update(value)


def _dig(obj: Mapping[str, Any], path: Sequence[str]) -> Any:
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


class _Strategy:
    """The strategy of one apply call; ``auto`` settles on the first evidence."""

    def __init__(self, requested: ApplyStrategy | str) -> None:
        self.requested = ApplyStrategy(requested)
        self.decided: ApplyStrategy | None = (
            None if self.requested is ApplyStrategy.AUTO else (self.requested)
        )

    def for_object(self, live: Mapping[str, Any] | None) -> ApplyStrategy:
        if self.decided is not None:
            return self.decided
        if live is None:
            return ApplyStrategy.SERVER_SIDE  # try it; _apply_one falls back on 404/415
        managed = (live.get("metadata") or {}).get("managedFields")
        self.decided = ApplyStrategy.SERVER_SIDE if managed else ApplyStrategy.MERGE
        return self.decided


def apply(
    objects: Iterable[Mapping[str, Any]],
    api_client: Any,
    field_manager: str = FIELD_MANAGER,
    dry_run: bool = False,
    strategy: ApplyStrategy | str = ApplyStrategy.AUTO,
) -> list[ApplyResult]:
    """Apply objects in order; report each as created, configured or unchanged.

    ``api_client`` is a ``kubernetes.client.ApiClient`` (or an API object holding
    one). See the module docstring for the strategies. Raises :class:`DeployError`
    naming the object when the server refuses one (403, 422, ...) or cannot be reached;
    objects before it stay applied, as with ``kubectl apply``.
    """
    return _apply(_Kube(api_client), objects, field_manager, dry_run, _Strategy(strategy))


def _apply(
    kube: _Kube,
    objects: Iterable[Mapping[str, Any]],
    field_manager: str,
    dry_run: bool,
    strategy: _Strategy,
    exact_paths: Sequence[Sequence[str]] = (),
) -> list[ApplyResult]:
    return [_apply_one(kube, obj, field_manager, dry_run, strategy, exact_paths) for obj in objects]


def _apply_one(
    kube: _Kube,
    obj: Mapping[str, Any],
    field_manager: str,
    dry_run: bool,
    strategy: _Strategy,
    exact_paths: Sequence[Sequence[str]],
) -> ApplyResult:
    ref = kube.ref(obj)
    live = kube.get(ref)
    chosen = strategy.for_object(live)

    def result(action: Action, how: ApplyStrategy) -> ApplyResult:
        return ApplyResult(ref.kind, ref.name, ref.namespace, action, how, dry_run)

    if chosen is ApplyStrategy.SERVER_SIDE:
        query = [("fieldManager", field_manager), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        try:
            after = kube.request(
                "PATCH", ref.path, body=dict(obj), query=query, content_type=APPLY_PATCH
            )
        except _ApiError as exc:
            if not (strategy.decided is None and live is None and exc.status in (404, 415)):
                raise _refused(ref, exc) from exc
            # A server without server-side apply: kmock answers 404 (it patches existing
            # objects only); old servers and some proxies answer 415.
            strategy.decided = chosen = ApplyStrategy.MERGE
        else:
            strategy.decided = ApplyStrategy.SERVER_SIDE
            if live is None:
                return result("created", chosen)
            same = _comparable(live) == _comparable(after)
            return result("unchanged" if same else "configured", chosen)

    if live is None:
        if not dry_run:
            try:
                kube.request("POST", ref.collection, body=dict(obj))
            except _ApiError as exc:
                raise _refused(ref, exc) from exc
        return result("created", chosen)

    patch = _merge_patch(live, obj)
    removals = _owned_annotation_removals(live, obj)
    if removals:
        _merge_into(patch, ("metadata", "annotations"), removals)
    for path in exact_paths:
        want = _dig(obj, path)
        have = _dig(live, path)
        if isinstance(want, Mapping) and isinstance(have, Mapping):
            exact = _merge_patch(have, want, exact=True)
            if exact:
                node = patch
                for key in path[:-1]:
                    node = node.setdefault(key, {})
                node[path[-1]] = exact
    if not patch:
        return result("unchanged", chosen)
    if not dry_run:
        try:
            kube.request("PATCH", ref.path, body=patch, content_type=MERGE_PATCH)
        except _ApiError as exc:
            raise _refused(ref, exc) from exc
    return result("configured", chosen)


# rollout ----------------------------------------------------------------------------------


def rollout_complete(deployment: Mapping[str, Any]) -> bool:
    """kubectl's rule: the controller saw the latest spec; every replica is updated and available.

    ``status.observedGeneration >= metadata.generation`` and ``updatedReplicas ==
    replicas == availableReplicas == spec.replicas`` (default 1).
    """
    status = deployment.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is None:
        return False
    generation = (deployment.get("metadata") or {}).get("generation")
    if generation is not None and int(observed) < int(generation):
        return False
    spec_replicas = (deployment.get("spec") or {}).get("replicas")
    wanted = 1 if spec_replicas is None else int(spec_replicas)
    updated = int(status.get("updatedReplicas") or 0)
    replicas = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    return updated == wanted and replicas == updated and available == updated


def _progress_deadline_exceeded(deployment: Mapping[str, Any]) -> bool:
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return True
    return False


def wait_for_rollout(
    api: Any, name: str, namespace: str, timeout_s: float = 300.0, poll_s: float = 2.0
) -> bool:
    """Poll a Deployment until it has rolled out (True) or ``timeout_s`` passes (False).

    Also False as soon as the controller reports ``ProgressDeadlineExceeded``.
    ``api`` is a ``kubernetes.client.ApiClient`` or an API object holding one.
    """
    kube = _Kube(api)
    ref = _Ref("apps/v1", "Deployment", "deployments", namespace, name)
    deadline = time.monotonic() + timeout_s
    while True:
        obj = kube.get(ref)
        if obj is None:
            raise DeployError(f"{ref} does not exist: nothing to wait for")
        if rollout_complete(obj):
            return True
        if _progress_deadline_exceeded(obj):
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(max(0.0, min(poll_s, remaining)))


# deploy and rollback ----------------------------------------------------------------------


def _annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _owned(annotations: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in annotations.items() if k.startswith(ANNOTATION_PREFIX)}


def _with_annotations(obj: dict[str, Any], owned: Mapping[str, str]) -> None:
    """Replace the ``crispops.dev/`` annotations of ``obj`` with ``owned``."""
    meta = obj.setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    others = {k: v for k, v in annotations.items() if not k.startswith(ANNOTATION_PREFIX)}
    meta["annotations"] = {**others, **owned}


def _clean_template(template: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(template))
    meta = out.get("metadata")
    if isinstance(meta, dict) and meta.get("creationTimestamp") is None:
        meta.pop("creationTimestamp", None)
    return out


def _revision(annotations: Mapping[str, str]) -> int:
    try:
        return int(annotations.get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def _dump_template(template: Mapping[str, Any]) -> str:
    return json.dumps(_clean_template(template), sort_keys=True, separators=(",", ":"))


def deploy(
    overlay_dir: Path,
    bento_tag: str,
    registry: str,
    api_client: Any,
    timeout_s: float = 300.0,
    dry_run: bool = False,
    *,
    poll_s: float = 2.0,
    strategy: ApplyStrategy | str = ApplyStrategy.AUTO,
    field_manager: str = FIELD_MANAGER,
) -> DeployResult:
    """Deploy a Bento: render the overlay with its image, apply, wait, roll back on failure.

    ``dry_run`` renders only: the result's ``manifests`` is the YAML that would be
    applied and the API server is not contacted (``api_client`` may be None).
    Otherwise the model-service Deployment's history annotations are updated in
    the same write as its new template; if the rollout is not complete within
    ``timeout_s`` (or applying fails after the Deployment changed) the previous
    template and annotations are re-applied and :class:`DeployError` is raised.
    """
    try:
        image = bento_image(registry, bento_tag)
    except ValueError as exc:
        raise DeployError(str(exc)) from exc
    objects = render(overlay_dir, image)
    deployment = _find_deployment(objects)
    if deployment is None:  # render() has checked; for type checkers
        raise DeployError(f"overlay {overlay_dir} renders no Deployment {MODEL_SERVICE_DEPLOYMENT}")
    name = str(deployment["metadata"]["name"])
    namespace = str(deployment["metadata"].get("namespace") or "default")
    if dry_run:
        return DeployResult(
            bento_tag=bento_tag,
            image=image,
            namespace=namespace,
            deployment=name,
            manifests=to_yaml(objects),
            dry_run=True,
        )

    kube = _Kube(api_client)
    ref = kube.ref(deployment)
    before = kube.get(ref)
    new_template = deployment["spec"]["template"]
    previous_image: str | None = None
    if before is None:
        revision = 1
        owned = {REVISION_ANNOTATION: "1", BENTO_ANNOTATION: bento_tag}
    else:
        old_owned = _owned(_annotations(before))
        old_template = (before.get("spec") or {}).get("template") or {}
        previous_image = _template_image(old_template)
        if previous_image == image and _covers(old_template, new_template):
            revision = _revision(old_owned)  # same image and template: nothing to record
            owned = {**old_owned, BENTO_ANNOTATION: bento_tag}
        else:
            revision = _revision(old_owned) + 1
            owned = {
                REVISION_ANNOTATION: str(revision),
                BENTO_ANNOTATION: bento_tag,
                PREVIOUS_TEMPLATE_ANNOTATION: _dump_template(old_template),
            }
            if previous_image:
                owned[PREVIOUS_IMAGE_ANNOTATION] = previous_image
            if old_owned.get(BENTO_ANNOTATION):
                owned[PREVIOUS_BENTO_ANNOTATION] = old_owned[BENTO_ANNOTATION]
    _with_annotations(deployment, owned)

    state = _Strategy(strategy)
    manifests = to_yaml(objects)
    try:
        results = _apply(kube, objects, field_manager, False, state)
    except DeployError as exc:
        raise DeployError(
            f"deploying {bento_tag} failed: {exc}"
            + _undo_after_failure(kube, deployment, before, image, field_manager, state)
        ) from exc

    ready = wait_for_rollout(kube.api_client, name, namespace, timeout_s, poll_s)
    if not ready:
        changed = any(
            r.kind == "Deployment" and r.name == name and r.action != "unchanged" for r in results
        )
        why = (
            f"the rollout of {image} to {ref} was not complete within {timeout_s:g}s "
            f"(`kubectl -n {namespace} rollout status deployment/{name}` shows why)"
        )
        if not changed:
            raise DeployError(why + "; the Deployment was unchanged, so nothing was rolled back")
        raise DeployError(
            why + _undo_after_failure(kube, deployment, before, image, field_manager, state)
        )
    return DeployResult(
        bento_tag=bento_tag,
        image=image,
        namespace=namespace,
        deployment=name,
        manifests=manifests,
        dry_run=False,
        results=results,
        previous_image=previous_image,
        revision=revision,
    )


def _undo_after_failure(
    kube: _Kube,
    deployment: Mapping[str, Any],
    before: Mapping[str, Any] | None,
    image: str,
    field_manager: str,
    state: _Strategy,
) -> str:
    """Put the model-service Deployment back as it was; a sentence for the error message."""
    ref = kube.ref(deployment)
    try:
        now = kube.get(ref)
    except DeployError as exc:
        return f"; could not check {ref} for a rollback: {exc}"
    if now is None or _template_image((now.get("spec") or {}).get("template")) != image:
        return f"; {ref} was not changed, so nothing was rolled back"
    if before is None:
        return (
            f"; there is no previous revision to roll back to: {ref} is left at {image} "
            "(it was created by this deploy)"
        )
    previous = _clean_template((before.get("spec") or {}).get("template") or {})
    restore = copy.deepcopy(dict(deployment))
    restore["spec"]["template"] = previous
    _with_annotations(restore, _owned(_annotations(before)))
    try:
        _apply(kube, [restore], field_manager, False, state, exact_paths=[("spec", "template")])
    except DeployError as exc:
        return f"; rolling {ref} back failed too: {exc}"
    return f"; rolled {ref} back to {_template_image(previous) or 'its previous template'}"


def rollback(
    overlay_dir: Path,
    api_client: Any,
    *,
    strategy: ApplyStrategy | str = ApplyStrategy.AUTO,
    field_manager: str = FIELD_MANAGER,
) -> str:
    """Put the model-service Deployment back on its previous pod template; return its image.

    The current template becomes the recorded previous one, so rolling back twice
    returns to where it started. Raises :class:`DeployError` when the Deployment or
    its recorded previous revision is missing. Does not wait for the rollout (see
    :func:`wait_for_rollout`).
    """
    objects = render(overlay_dir, None)
    deployment = _find_deployment(objects)
    if deployment is None:
        raise DeployError(
            f"overlay {overlay_dir} renders no Deployment {MODEL_SERVICE_DEPLOYMENT}: "
            "nothing to roll back"
        )
    kube = _Kube(api_client)
    ref = kube.ref(deployment)
    live = kube.get(ref)
    if live is None:
        raise DeployError(f"{ref} does not exist: nothing to roll back (deploy a Bento first)")
    owned = _owned(_annotations(live))
    recorded = owned.get(PREVIOUS_TEMPLATE_ANNOTATION)
    if not recorded:
        raise DeployError(
            f"{ref} has no previous revision to roll back to (no {PREVIOUS_TEMPLATE_ANNOTATION} "
            "annotation: it needs two deploys with `crispops deploy`)"
        )
    try:
        previous = json.loads(recorded)
    except ValueError as exc:
        raise DeployError(
            f"{ref}: the {PREVIOUS_TEMPLATE_ANNOTATION} annotation is not valid JSON"
        ) from exc
    previous_image = _template_image(previous)
    if not isinstance(previous, dict) or not previous_image:
        raise DeployError(
            f"{ref}: the {PREVIOUS_TEMPLATE_ANNOTATION} annotation holds no pod template "
            f"with a {MODEL_SERVICE_CONTAINER} container"
        )
    current = (live.get("spec") or {}).get("template") or {}
    swapped = {
        REVISION_ANNOTATION: str(_revision(owned) + 1),
        PREVIOUS_TEMPLATE_ANNOTATION: _dump_template(current),
    }
    current_image = _template_image(current)
    if current_image:
        swapped[PREVIOUS_IMAGE_ANNOTATION] = current_image
    if owned.get(PREVIOUS_BENTO_ANNOTATION):
        swapped[BENTO_ANNOTATION] = owned[PREVIOUS_BENTO_ANNOTATION]
    if owned.get(BENTO_ANNOTATION):
        swapped[PREVIOUS_BENTO_ANNOTATION] = owned[BENTO_ANNOTATION]
    restore = copy.deepcopy(deployment)
    restore["spec"]["template"] = previous
    _with_annotations(restore, swapped)
    _apply(
        kube,
        [restore],
        field_manager,
        False,
        _Strategy(strategy),
        exact_paths=[("spec", "template")],
    )
    return previous_image
