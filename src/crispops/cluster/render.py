"""Render a kustomize overlay and set the Bento's image on the model service.

``kubectl kustomize`` renders the overlay offline (kubectl >= 1.27 carries
kustomize); the objects come back as plain dicts. With an image, every container
that runs the model-service image gets it, in memory, after rendering: the
overlay's files are never edited (no ``kustomize edit set image``), so a deploy
leaves the working tree as it was and a dry run shows exactly what is applied.

Nothing here talks to a cluster.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from crispops.cluster.images import image_name
from crispops.errors import DeployError

__all__ = [
    "MODEL_SERVICE_CONTAINER",
    "MODEL_SERVICE_DEPLOYMENT",
    "MODEL_SERVICE_IMAGE_NAME",
    "RENDER_TIMEOUT_S",
    "find_model_deployment",
    "render",
    "template_image",
    "to_yaml",
]

MODEL_SERVICE_DEPLOYMENT = "crispops-model-service"
MODEL_SERVICE_CONTAINER = "model-service"
#: The image name the base manifests use; the overlays pin it with kustomize ``images:``.
MODEL_SERVICE_IMAGE_NAME = "crispops-model-service"

RENDER_TIMEOUT_S = 120.0


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


def find_model_deployment(objects: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The ``crispops-model-service`` Deployment among ``objects`` (the object itself)."""
    for obj in objects:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == "Deployment" and meta.get("name") == MODEL_SERVICE_DEPLOYMENT:
            return obj  # type: ignore[return-value]
    return None


def template_image(template: Mapping[str, Any] | None) -> str | None:
    """The model-service image of a pod template (None when it has no such container)."""
    container = _model_container(template or {})
    return None if container is None else container.get("image")


def _model_container(template: Mapping[str, Any]) -> dict[str, Any] | None:
    containers = [c for c in (template.get("spec") or {}).get("containers") or [] if c]
    for c in containers:
        if c.get("name") == MODEL_SERVICE_CONTAINER:
            return c
    return containers[0] if len(containers) == 1 else None


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


def _set_model_image(objects: list[dict[str, Any]], image: str, overlay_dir: Path) -> None:
    if image.rsplit("/", 1)[-1].split("@", 1)[0].endswith(":latest"):
        raise DeployError(f"image {image!r} uses :latest; pin the Bento's version")
    deployment = find_model_deployment(objects)
    if deployment is None:
        raise DeployError(
            f"overlay {overlay_dir} renders no Deployment {MODEL_SERVICE_DEPLOYMENT}: "
            "cannot set the model service image"
        )
    names = {MODEL_SERVICE_IMAGE_NAME}
    current = template_image((deployment.get("spec") or {}).get("template") or {})
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
