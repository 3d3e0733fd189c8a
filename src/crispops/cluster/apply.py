"""Apply rendered objects: server-side apply, or a JSON-merge fallback for servers without it.

Strategies (:class:`ApplyStrategy`):

``server-side``
    Server-side apply through the kubernetes client's DynamicClient: ``PATCH``
    with ``application/apply-patch+yaml``, ``fieldManager=crispops`` and
    ``force=true`` (kubectl's ``apply --server-side --force-conflicts``). The API
    server creates missing objects, merges by field ownership and prunes fields
    crispops applied before but no longer sends. ``dry_run`` is the server's
    ``dryRun=All``. This is what every real API server gets.
``merge``
    Only for servers without server-side apply: kmock's KubernetesEmulator, which
    has no ``PUT``, stores objects as plain JSON, treats every ``PATCH`` as a JSON
    merge patch, records no ``managedFields`` and answers 404 to an apply-patch of
    a missing object. ``GET``; ``POST`` when missing; otherwise ``PATCH`` with
    ``application/merge-patch+json`` carrying only the fields that differ, and no
    request at all when nothing differs. Fields the server added (defaults,
    status) are left alone; annotations under ``crispops.dev/`` are owned by
    crispops and removed when no longer sent. Fields dropped from the manifests
    are not pruned (server-side apply does that). ``dry_run`` sends no writes.
``auto`` (default)
    Decided from what the server shows: an existing object without
    ``metadata.managedFields`` (every API server since 1.18 records them on every
    write) means ``merge``; an existing object with them means ``server-side``; a
    missing object is server-side applied, and a 404 or 415 answer to that (a real
    server creates the object; kmock answers 404) switches to ``merge`` for the
    rest of the call. No object is ever written by a server-side apply that the
    server does not understand.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from crispops.cluster.kube import ApiError, Kube, refused

__all__ = [
    "ANNOTATION_PREFIX",
    "FIELD_MANAGER",
    "Action",
    "Applier",
    "ApplyResult",
    "ApplyStrategy",
    "apply",
    "covers",
]

FIELD_MANAGER = "crispops"
#: Annotations under this prefix are crispops': the merge strategy removes those it no
#: longer sends (server-side apply prunes them by field ownership).
ANNOTATION_PREFIX = "crispops.dev/"

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


def apply(
    objects: Iterable[Mapping[str, Any]],
    api_client: Any,
    field_manager: str = FIELD_MANAGER,
    dry_run: bool = False,
    strategy: ApplyStrategy | str = ApplyStrategy.AUTO,
) -> list[ApplyResult]:
    """Apply objects in order; report each as created, configured or unchanged.

    ``api_client`` is a ``kubernetes.client.ApiClient`` (or an API object holding
    one). See the module docstring for the strategies. Raises
    :class:`crispops.errors.DeployError` naming the object when the server refuses
    one (403, 422, ...) or cannot be reached; objects before it stay applied, as
    with ``kubectl apply``.
    """
    return Applier(Kube.of(api_client), field_manager, strategy).apply(objects, dry_run)


class Applier:
    """Applies objects through one :class:`Kube`; ``auto`` settles on the first evidence.

    One Applier is one decision: a deploy and the rollback after it share theirs.
    """

    def __init__(
        self,
        kube: Kube,
        field_manager: str = FIELD_MANAGER,
        strategy: ApplyStrategy | str = ApplyStrategy.AUTO,
    ) -> None:
        self.kube = kube
        self.field_manager = field_manager
        self.requested = ApplyStrategy(strategy)
        self.decided: ApplyStrategy | None = (
            None if self.requested is ApplyStrategy.AUTO else self.requested
        )

    def apply(
        self,
        objects: Iterable[Mapping[str, Any]],
        dry_run: bool = False,
        exact_paths: Sequence[Sequence[str]] = (),
    ) -> list[ApplyResult]:
        """Apply each object in order. Under ``exact_paths`` (e.g. ``spec.template``) the
        merge strategy also removes what the live object has and the desired one lacks."""
        return [self._apply_one(obj, dry_run, exact_paths) for obj in objects]

    def _for_object(self, live: Mapping[str, Any] | None) -> ApplyStrategy:
        if self.decided is not None:
            return self.decided
        if live is None:
            return ApplyStrategy.SERVER_SIDE  # try it; _apply_one falls back on 404/415
        managed = (live.get("metadata") or {}).get("managedFields")
        self.decided = ApplyStrategy.SERVER_SIDE if managed else ApplyStrategy.MERGE
        return self.decided

    def _apply_one(
        self, obj: Mapping[str, Any], dry_run: bool, exact_paths: Sequence[Sequence[str]]
    ) -> ApplyResult:
        kube = self.kube
        ref = kube.ref(obj)
        live = kube.get(ref)
        chosen = self._for_object(live)

        def result(action: Action, how: ApplyStrategy) -> ApplyResult:
            return ApplyResult(ref.kind, ref.name, ref.namespace, action, how, dry_run)

        if chosen is ApplyStrategy.SERVER_SIDE:
            try:
                after = kube.server_side_apply(ref, obj, self.field_manager, dry_run)
            except ApiError as exc:
                if not (self.decided is None and live is None and exc.status in (404, 415)):
                    raise refused(ref, exc) from exc
                # A server without server-side apply: kmock answers 404 (it patches
                # existing objects only); old servers and some proxies answer 415.
                self.decided = chosen = ApplyStrategy.MERGE
            else:
                self.decided = ApplyStrategy.SERVER_SIDE
                if live is None:
                    return result("created", chosen)
                same = _comparable(live) == _comparable(after)
                return result("unchanged" if same else "configured", chosen)
        # merge: only for servers without server-side apply (see the module docstring)
        if live is None:
            if not dry_run:
                try:
                    kube.create(ref, obj)
                except ApiError as exc:
                    raise refused(ref, exc) from exc
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
                kube.merge_patch(ref, patch)
            except ApiError as exc:
                raise refused(ref, exc) from exc
        return result("configured", chosen)


# comparing and merge patches ------------------------------------------------------------------

_SERVER_META = ("resourceVersion", "managedFields", "generation", "uid", "creationTimestamp")


def covers(live: Any, desired: Any) -> bool:
    """Whether ``live`` already holds everything ``desired`` sets (extra live keys allowed)."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        return all(
            (k in live and covers(live[k], v)) or (v is None and k not in live)
            for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(covers(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object without what the server keeps for itself (status, versions, ownership)."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in (*_SERVER_META, "selfLink"):
            meta.pop(key, None)
    return out


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
        elif not (have == want if exact else covers(have, want)):
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
