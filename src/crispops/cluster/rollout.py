"""Rollout status and the model service's revision history: wait, undo, roll back.

:func:`wait_for_rollout` polls the model-service Deployment with kubectl's rule
(:func:`rollout_complete`) until it has rolled out, the controller reports
``ProgressDeadlineExceeded``, or the time is up.

Rollback history lives on the model-service Deployment itself, written in the
same request as the change it records (no ReplicaSet history is needed, so it
works without controllers): ``crispops.dev/revision`` (a counter),
``crispops.dev/bento-tag``, and the state before the last change:
``crispops.dev/previous-image``, ``crispops.dev/previous-bento-tag`` and
``crispops.dev/previous-template`` (the whole previous pod template, as JSON).
A failed rollout re-applies the previous template and restores the annotations as
they were (:func:`undo_after_failure`); :func:`rollback` swaps the current and
previous templates (a second rollback undoes the first, like ``kubectl rollout
undo``).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crispops.cluster.apply import (
    ANNOTATION_PREFIX,
    FIELD_MANAGER,
    Applier,
    ApplyStrategy,
    covers,
)
from crispops.cluster.kube import Kube
from crispops.cluster.render import (
    MODEL_SERVICE_CONTAINER,
    MODEL_SERVICE_DEPLOYMENT,
    find_model_deployment,
    render,
    template_image,
)
from crispops.errors import DeployError

__all__ = [
    "BENTO_ANNOTATION",
    "PREVIOUS_BENTO_ANNOTATION",
    "PREVIOUS_IMAGE_ANNOTATION",
    "PREVIOUS_TEMPLATE_ANNOTATION",
    "REVISION_ANNOTATION",
    "Revision",
    "record_revision",
    "rollback",
    "rollout_complete",
    "undo_after_failure",
    "wait_for_rollout",
]

REVISION_ANNOTATION = ANNOTATION_PREFIX + "revision"
BENTO_ANNOTATION = ANNOTATION_PREFIX + "bento-tag"
PREVIOUS_IMAGE_ANNOTATION = ANNOTATION_PREFIX + "previous-image"
PREVIOUS_BENTO_ANNOTATION = ANNOTATION_PREFIX + "previous-bento-tag"
PREVIOUS_TEMPLATE_ANNOTATION = ANNOTATION_PREFIX + "previous-template"


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
    ``api`` is a ``kubernetes.client.ApiClient``, an API object holding one, or a
    :class:`crispops.cluster.kube.Kube`.
    """
    kube = Kube.of(api)
    ref = kube.ref(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
        }
    )
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


# revision history ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Revision:
    """What a deploy records on the model-service Deployment."""

    #: The ``crispops.dev/revision`` now recorded (unchanged when nothing changed).
    number: int
    #: The model-service image that ran before (None on the first deploy).
    previous_image: str | None


def record_revision(
    deployment: dict[str, Any], before: Mapping[str, Any] | None, image: str, bento_tag: str
) -> Revision:
    """Write the history annotations for deploying ``image`` onto ``deployment`` (rendered).

    ``before`` is the live Deployment (None when there is none yet). A deploy of
    the image and template already running records nothing new but the Bento tag.
    """
    new_template = deployment["spec"]["template"]
    previous_image: str | None = None
    if before is None:
        number = 1
        owned = {REVISION_ANNOTATION: "1", BENTO_ANNOTATION: bento_tag}
    else:
        old_owned = _owned(_annotations(before))
        old_template = (before.get("spec") or {}).get("template") or {}
        previous_image = template_image(old_template)
        if previous_image == image and covers(old_template, new_template):
            number = _revision(old_owned)  # same image and template: nothing to record
            owned = {**old_owned, BENTO_ANNOTATION: bento_tag}
        else:
            number = _revision(old_owned) + 1
            owned = {
                REVISION_ANNOTATION: str(number),
                BENTO_ANNOTATION: bento_tag,
                PREVIOUS_TEMPLATE_ANNOTATION: _dump_template(old_template),
            }
            if previous_image:
                owned[PREVIOUS_IMAGE_ANNOTATION] = previous_image
            if old_owned.get(BENTO_ANNOTATION):
                owned[PREVIOUS_BENTO_ANNOTATION] = old_owned[BENTO_ANNOTATION]
    _with_annotations(deployment, owned)
    return Revision(number, previous_image)


def undo_after_failure(
    applier: Applier,
    deployment: Mapping[str, Any],
    before: Mapping[str, Any] | None,
    image: str,
) -> str:
    """Put the model-service Deployment back as it was; a sentence for the error message."""
    kube = applier.kube
    ref = kube.ref(deployment)
    try:
        now = kube.get(ref)
    except DeployError as exc:
        return f"; could not check {ref} for a rollback: {exc}"
    if now is None or template_image((now.get("spec") or {}).get("template")) != image:
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
        applier.apply([restore], exact_paths=[("spec", "template")])
    except DeployError as exc:
        return f"; rolling {ref} back failed too: {exc}"
    return f"; rolled {ref} back to {template_image(previous) or 'its previous template'}"


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
    deployment = find_model_deployment(objects)
    if deployment is None:
        raise DeployError(
            f"overlay {overlay_dir} renders no Deployment {MODEL_SERVICE_DEPLOYMENT}: "
            "nothing to roll back"
        )
    kube = Kube.of(api_client)
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
    previous_image = template_image(previous) if isinstance(previous, dict) else None
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
    current_image = template_image(current)
    if current_image:
        swapped[PREVIOUS_IMAGE_ANNOTATION] = current_image
    if owned.get(PREVIOUS_BENTO_ANNOTATION):
        swapped[BENTO_ANNOTATION] = owned[PREVIOUS_BENTO_ANNOTATION]
    if owned.get(BENTO_ANNOTATION):
        swapped[PREVIOUS_BENTO_ANNOTATION] = owned[BENTO_ANNOTATION]
    restore = copy.deepcopy(deployment)
    restore["spec"]["template"] = previous
    _with_annotations(restore, swapped)
    Applier(kube, field_manager, strategy).apply([restore], exact_paths=[("spec", "template")])
    return previous_image


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
