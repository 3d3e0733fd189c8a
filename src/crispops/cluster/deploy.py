"""Deploy the champion's Bento to Kubernetes: render, apply, wait, roll back.

The deployable unit is the Bento tag the package step produced: ``name:version``
becomes the image ``<registry>/<name>:<version>`` (never ``:latest``), which is set on
the model-service containers of a kustomize overlay rendered with ``kubectl
kustomize``. The rendered objects are applied with the kubernetes client, the
model-service Deployment is watched until it has rolled out, and a rollout that
does not become ready in time is rolled back to the previous pod template.

The work is split by job, each module using only the ones before it:

- :mod:`crispops.cluster.images`: the Bento tag → image rule;
- :mod:`crispops.cluster.render`: ``kubectl kustomize`` and setting the image;
- :mod:`crispops.cluster.kube`: the kubernetes client (ApiClient from a
  kubeconfig, DynamicClient discovery and requests, readable errors);
- :mod:`crispops.cluster.apply`: the apply strategies (server-side apply; a JSON
  merge fallback for servers without it, i.e. kmock's emulator);
- :mod:`crispops.cluster.rollout`: rollout status and the revision history kept in
  ``crispops.dev/`` annotations (undo after a failure, :func:`rollback`);
- this module: :func:`deploy`, which puts them together. It also re-exports the
  public names of the others, so ``crispops.cluster.deploy`` stays the one import
  for callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crispops.cluster.apply import (
    ANNOTATION_PREFIX,
    FIELD_MANAGER,
    Applier,
    ApplyResult,
    ApplyStrategy,
    apply,
)
from crispops.cluster.images import bento_image
from crispops.cluster.kube import Kube
from crispops.cluster.render import (
    MODEL_SERVICE_CONTAINER,
    MODEL_SERVICE_DEPLOYMENT,
    MODEL_SERVICE_IMAGE_NAME,
    find_model_deployment,
    render,
    to_yaml,
)
from crispops.cluster.rollout import (
    BENTO_ANNOTATION,
    PREVIOUS_BENTO_ANNOTATION,
    PREVIOUS_IMAGE_ANNOTATION,
    PREVIOUS_TEMPLATE_ANNOTATION,
    REVISION_ANNOTATION,
    record_revision,
    rollback,
    rollout_complete,
    undo_after_failure,
    wait_for_rollout,
)
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
    deployment = find_model_deployment(objects)
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

    kube = Kube.of(api_client)
    ref = kube.ref(deployment)
    before = kube.get(ref)
    revision = record_revision(deployment, before, image, bento_tag)
    applier = Applier(kube, field_manager, strategy)
    manifests = to_yaml(objects)
    try:
        results = applier.apply(objects)
    except DeployError as exc:
        raise DeployError(
            f"deploying {bento_tag} failed: {exc}"
            + undo_after_failure(applier, deployment, before, image)
        ) from exc

    ready = wait_for_rollout(kube, name, namespace, timeout_s, poll_s)
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
        raise DeployError(why + undo_after_failure(applier, deployment, before, image))
    return DeployResult(
        bento_tag=bento_tag,
        image=image,
        namespace=namespace,
        deployment=name,
        manifests=manifests,
        dry_run=False,
        results=results,
        previous_image=revision.previous_image,
        revision=revision.number,
    )
