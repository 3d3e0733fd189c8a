"""The Kubernetes API as deploy uses it: the official client, objects as dicts, readable errors.

:func:`api_client` builds a ``kubernetes.client.ApiClient`` from a kubeconfig, or
from the pod's service account inside a cluster. :class:`Kube` puts the official
client's ``kubernetes.dynamic.DynamicClient`` over it:

Discovery
    A kind's plural and whether it is namespaced come from the server's own
    discovery documents (``/api/v1``, ``/apis``, ``/apis/<group>/<version>``),
    read by DynamicClient's ``resources.get``, as ``kubectl`` does; custom
    resources work like the built-in kinds, and there is no table of kinds here.
    What is discovered is kept in memory for the life of one :class:`Kube` (one
    deploy), never in DynamicClient's default cache file: that file has a
    predictable name in the shared temp directory, where another user could plant
    it, and it outlives changes to the cluster. kmock's KubernetesEmulator serves
    discovery for the kinds it is told about; the integration tests give it
    kmock's bundled discovery documents of a real (K3s) cluster, so the same
    code path runs against the emulator and against a real API server.
Requests
    get, create, JSON merge patch and server-side apply are DynamicClient calls;
    auth, TLS and proxy settings come from the ApiClient. Every request,
    discovery included, has a (connect, read) timeout of :data:`REQUEST_TIMEOUT_S`.
Errors (hand-written: the client raises exceptions that carry the raw HTTP response)
    An unreachable server becomes :class:`crispops.errors.DeployError` ("cannot
    reach the Kubernetes API at <host>: <reason>"); an HTTP error answer becomes
    :class:`ApiError` with the ``message`` of the server's Status body, which
    callers turn into a DeployError naming the object (:func:`refused`).

The ``kubernetes`` package is imported on first use: rendering alone does not pay
for it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crispops.config import env
from crispops.errors import DeployError, UserError

__all__ = [
    "MERGE_PATCH",
    "REQUEST_TIMEOUT_S",
    "ApiError",
    "Kube",
    "ObjectRef",
    "api_client",
    "refused",
]

#: (connect, read) timeout of each API request, seconds.
REQUEST_TIMEOUT_S = (10.0, 60.0)
MERGE_PATCH = "application/merge-patch+json"


def api_client(kubeconfig: Path | str | None = None, context: str | None = None) -> Any:
    """A ``kubernetes.client.ApiClient`` for a kubeconfig and context.

    With neither given and ``$KUBERNETES_SERVICE_HOST`` set (inside a pod), the
    pod's service account; otherwise ``kubeconfig`` or ``$KUBECONFIG`` or
    ``~/.kube/config``. Raises :class:`crispops.errors.UserError` when none is usable.
    """
    from kubernetes import client
    from kubernetes import config as kube_config

    try:
        if kubeconfig is None and context is None and env("KUBERNETES_SERVICE_HOST"):
            kube_config.load_incluster_config()
            return client.ApiClient()
        return kube_config.new_client_from_config(
            config_file=str(kubeconfig) if kubeconfig else None, context=context
        )
    except (kube_config.ConfigException, OSError, TypeError) as exc:
        raise UserError(
            f"no usable Kubernetes configuration ({exc}); pass --kubeconfig or set KUBECONFIG"
        ) from None


class ApiError(Exception):
    """The API server answered with an HTTP error; ``message`` is its Status message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ObjectRef:
    """Where one object lives in the API: its discovered resource, name and namespace."""

    kind: str
    name: str
    namespace: str | None
    #: The ``kubernetes.dynamic.Resource`` of the kind (plural, namespaced, URL paths).
    resource: Any = field(repr=False, compare=False)

    @property
    def path(self) -> str:
        return str(self.resource.path(name=self.name, namespace=self.namespace))

    def __str__(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.kind} {self.name}{where}"


class Kube:
    """Objects as dicts through a DynamicClient over one ``kubernetes.client.ApiClient``.

    Nothing is sent until the first call that needs the server (discovery runs then).
    """

    def __init__(self, api_client: Any) -> None:
        if api_client is None:
            raise DeployError("no Kubernetes API client: pass a kubernetes.client.ApiClient")
        #: The ApiClient (taken out of an API object such as ``CoreV1Api`` if given one).
        self.api_client = getattr(api_client, "api_client", api_client)
        self.host = str(getattr(getattr(self.api_client, "configuration", None), "host", "?"))
        self._dynamic: Any = None

    @classmethod
    def of(cls, api: Any) -> Kube:
        """``api`` itself when it is a Kube (its discovery is reused), else a new one over it."""
        return api if isinstance(api, Kube) else cls(api)

    # objects ------------------------------------------------------------------------------

    def ref(self, obj: Mapping[str, Any]) -> ObjectRef:
        """Where ``obj`` lives, by discovery of its ``apiVersion`` and ``kind``."""
        api_version = str(obj.get("apiVersion") or "")
        kind = str(obj.get("kind") or "")
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not api_version or not kind or not name:
            raise DeployError(f"object without apiVersion/kind/metadata.name: {kind or obj!r}")
        resource = self._resource(api_version, kind)
        namespaced = bool(resource.namespaced)
        namespace = meta.get("namespace") if namespaced else None
        if namespaced and not namespace:
            raise DeployError(f"{kind} {name} has no metadata.namespace (set one in the overlay)")
        return ObjectRef(kind, str(name), namespace, resource)

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        try:
            with self._errors():
                data = ref.resource.get(name=ref.name, namespace=ref.namespace, serializer=_plain)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise refused(ref, exc) from exc
        return self._json(data, "GET", ref)

    def create(self, ref: ObjectRef, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body``; raises :class:`ApiError` when the server refuses it."""
        with self._errors():
            data = ref.resource.create(body=dict(body), namespace=ref.namespace, serializer=_plain)
        return self._json(data, "POST", ref)

    def merge_patch(self, ref: ObjectRef, patch: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH with a JSON merge patch (RFC 7386); raises :class:`ApiError` when refused."""
        with self._errors():
            data = ref.resource.patch(
                body=dict(patch),
                name=ref.name,
                namespace=ref.namespace,
                content_type=MERGE_PATCH,
                serializer=_plain,
            )
        return self._json(data, "PATCH", ref)

    def delete(self, ref: ObjectRef) -> bool:
        """DELETE the object; False when it was not there. Raises DeployError when refused."""
        try:
            with self._errors():
                ref.resource.delete(name=ref.name, namespace=ref.namespace, serializer=_plain)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise refused(ref, exc) from exc
        return True

    def server_side_apply(
        self, ref: ObjectRef, body: Mapping[str, Any], field_manager: str, dry_run: bool
    ) -> dict[str, Any]:
        """Server-side apply with ``force``; the object as the server has (or would have) it.

        Raises :class:`ApiError` when the server refuses it.
        """
        with self._errors():
            data = ref.resource.server_side_apply(
                body=dict(body),
                name=ref.name,
                namespace=ref.namespace,
                field_manager=field_manager,
                # A string: the client would send a bool as "True"; the API says "true".
                force_conflicts="true",
                dry_run="All" if dry_run else None,
                serializer=_plain,
            )
        return self._json(data, "PATCH", ref)

    # the client ---------------------------------------------------------------------------

    @property
    def dynamic(self) -> Any:
        """The ``kubernetes.dynamic.DynamicClient``; created (with discovery) on first use."""
        if self._dynamic is None:
            try:
                with self._errors():
                    self._dynamic = _dynamic_client(self.api_client)
            except ApiError as exc:
                raise self._discovery_refused(exc, "its API groups") from exc
            except (ValueError, AttributeError, KeyError, TypeError) as exc:
                # e.g. a server that is not Kubernetes answering /version or /apis
                raise DeployError(
                    f"the server at {self.host} does not answer like a Kubernetes API "
                    f"(discovery failed: {exc})"
                ) from exc
        return self._dynamic

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError

        # the core group lives under /api, the others under /apis: say which, or the
        # discoverer searches every group for a core kind
        prefix = "apis" if "/" in api_version else "api"
        dynamic = self.dynamic
        try:
            with self._errors():
                return dynamic.resources.get(prefix=prefix, api_version=api_version, kind=kind)
        except ResourceNotFoundError as exc:
            raise DeployError(
                f"the Kubernetes API at {self.host} serves no kind {kind} in {api_version} "
                "(`kubectl api-resources` lists what it serves; a custom resource needs its "
                "CustomResourceDefinition applied first)"
            ) from exc
        except ResourceNotUniqueError as exc:
            raise DeployError(
                f"the Kubernetes API at {self.host} serves more than one kind {kind} in "
                f"{api_version}: {exc}"
            ) from exc
        except ApiError as exc:
            raise self._discovery_refused(exc, f"{api_version} (needed for {kind})") from exc

    def _discovery_refused(self, exc: ApiError, what: str) -> DeployError:
        if exc.status == 401:
            return DeployError(
                f"the Kubernetes API at {self.host} rejected the credentials "
                f"({exc.status} {exc.reason}): {exc.message}"
            )
        return DeployError(
            f"the Kubernetes API at {self.host} did not list {what}: "
            f"{exc.status} {exc.reason}: {exc.message}"
        )

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Client exceptions as :class:`ApiError` (an answer) or DeployError (no answer)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            yield
        except ApiException as exc:
            if not exc.status:  # the client's own wrapper of TLS errors
                raise DeployError(
                    f"cannot reach the Kubernetes API at {self.host}: {exc.reason}"
                ) from exc
            raise ApiError(int(exc.status), str(exc.reason), _status_message(exc.body)) from exc
        except (HTTPError, OSError) as exc:
            raise DeployError(
                f"cannot reach the Kubernetes API at {self.host}: {_short_reason(exc)}"
            ) from exc

    def _json(self, data: Any, method: str, ref: ObjectRef) -> dict[str, Any]:
        if isinstance(data, dict):
            return data
        if isinstance(data, str) and data.strip():  # the client hands back what is not JSON
            raise DeployError(
                f"the Kubernetes API at {self.host} answered {method} {ref.path} with non-JSON"
            )
        return {}


def refused(ref: ObjectRef, exc: ApiError) -> DeployError:
    """What the server refused, about which object, and its own words."""
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


def _plain(_client: Any, data: Any) -> Any:
    """A DynamicClient serializer that keeps the decoded JSON as it is (no ResourceInstance)."""
    return data


def _dynamic_client(api_client: Any) -> Any:
    client_class, discoverer_class = _client_classes()
    # A cache file that does not exist, in a directory of our own: the discoverer
    # starts empty, and since it never writes, the file never comes to be.
    with tempfile.TemporaryDirectory(prefix="crispops-discovery-") as tmp:
        return client_class(
            api_client, cache_file=os.path.join(tmp, "discovery.json"), discoverer=discoverer_class
        )


@functools.cache
def _client_classes() -> tuple[type, type]:
    from kubernetes.dynamic import DynamicClient, LazyDiscoverer

    class Discoverer(LazyDiscoverer):
        """LazyDiscoverer that keeps what it learns in memory only."""

        def _write_cache(self) -> None:
            pass

    class Client(DynamicClient):
        """DynamicClient whose every request, discovery included, has a timeout."""

        def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
            params.setdefault("_request_timeout", REQUEST_TIMEOUT_S)
            return super().request(method, path, body=body, **params)

    return Client, Discoverer


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
