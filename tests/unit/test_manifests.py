"""The kustomize manifests: every overlay renders, validates and meets the house policy.

Each overlay under ``manifests/overlays/`` is rendered with ``kubectl kustomize``
(offline) and the rendered objects are checked:

- schema: ``kubernetes_validate`` in strict mode (unknown fields are errors) for
  Kubernetes 1.30, the oldest version we support, and for the newest version the
  installed kubernetes-validate bundles;
- Pod Security Standard "restricted" plus the house rules (DESIGN.md): non-root
  with non-zero UID/GID/fsGroup, ``seccompProfile: RuntimeDefault``, no privilege
  escalation, all capabilities dropped, read-only root filesystem with emptyDir
  for writable paths, requests and limits, liveness and readiness probes, no
  service-account token, pinned image tags, Secrets only by reference;
- labels and selectors: ``app.kubernetes.io/{name,instance,component,part-of}``
  everywhere, selectors of exactly ``name`` + ``instance`` and nothing version-like;
- wiring: Services, HPAs, PDBs and NetworkPolicies select or target objects that
  exist; generated ConfigMaps carry a hash suffix and are referenced by it;
- environments: dev runs one replica with in-cluster stores, prod at least three
  replicas, PDBs and managed stores;
- Spark: ``components/spark`` composed into dev and prod (``dev+spark``, ``prod+spark``:
  a kustomization in a temporary directory with the overlay as its resource, the
  Component and the Spark image's pin) passes every check above, and the executor pod
  template it ships in a ConfigMap is checked as a workload of its own. The one
  exception to "no service-account token" is the Spark driver (the materialization job
  in a Spark render), whose ServiceAccount's only permissions are the Role that lets
  it create and delete its executor pods and their ConfigMap.

Probes are not required on Job/CronJob pods: a run-to-completion pod serves
nothing to probe, a readiness probe means nothing for it, and its health is its
exit code, bounded by ``activeDeadlineSeconds`` and ``backoffLimit``.

The module is skipped when ``kubectl`` is missing, unless
``CRISPOPS_REQUIRE_SERVICES=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
KUBECTL = shutil.which("kubectl")
REQUIRE_SERVICES = os.environ.get("CRISPOPS_REQUIRE_SERVICES") == "1"

if KUBECTL is None:
    if REQUIRE_SERVICES:
        pytest.fail(
            "kubectl is required to render manifests/overlays (CRISPOPS_REQUIRE_SERVICES=1)",
            pytrace=False,
        )
    pytest.skip("kubectl not found: cannot render the kustomize overlays", allow_module_level=True)

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed (pip install -e '.[dev]')"
)
from kubernetes_validate.utils import latest_version  # noqa: E402

NAMESPACE = "crispops"
RENDER_TIMEOUT_S = 120
OLDEST_K8S = "1.30"
NEWEST_K8S = latest_version()

STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
)
SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
POD_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}
JOB_KINDS = {"Job", "CronJob"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}
SECRET_NAME_RE = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)
HASHED_NAME_RE = re.compile(r"^(?P<base>.+)-(?P<hash>[a-z0-9]{10})$")
#: ConfigMaps that must come from a configMapGenerator (so a change rolls the pods).
GENERATED_CONFIGMAPS = {
    "crispops-feature-store",
    "crispops-feature-store-env",
    "crispops-model-service-env",
}
SPARK_CONFIGMAPS = {"crispops-feature-store-spark", "crispops-spark-executor-template"}
#: The feature_store.yaml ConfigMaps: the online-only one, and the Spark driver's.
FEATURE_STORE_CONFIGMAPS = {"crispops-feature-store", "crispops-feature-store-spark"}
CREDENTIALS_SECRET = "crispops-feast-credentials"
#: Every Secret a workload may reference, each created out of band: Feast's stores, the
#: prediction log's DSN (the monitor reads the log), the KFP token (it submits retraining).
KNOWN_SECRETS = {CREDENTIALS_SECRET, "crispops-prediction-log", "crispops-kfp"}


def _overlays() -> list[str]:
    root = MANIFESTS / "overlays"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "kustomization.yaml").is_file())


OVERLAYS = _overlays()
SPARK_COMPONENT = MANIFESTS / "components" / "spark"
#: An overlay with components/spark composed in, as a user's overlay would list it.
SPARK_SUFFIX = "+spark"
SPARK_RENDERS = [f"{env}{SPARK_SUFFIX}" for env in OVERLAYS if env in {"dev", "prod"}]
RENDERS = OVERLAYS + SPARK_RENDERS
SPARK_IMAGE_PIN = {
    "name": "crispops-components-spark",
    "newName": "ghcr.io/crispops/crispops-components",
    "newTag": "0.1.0-spark",
}
#: ConfigMaps that carry a pod template (a pod someone else creates from it): their pods
#: are checked like every workload's.
EMBEDDED_POD_TEMPLATES = {"crispops-spark-executor-template": "executor-pod-template.yaml"}
#: The Spark driver: the only pod that mounts a service-account token, and only in a
#: render with components/spark, as this ServiceAccount.
SPARK_DRIVER = "CronJob/crispops-materialization"
SPARK_DRIVER_SA = "crispops-spark"
#: What the driver's Role may do: its executor pods and their ConfigMap, nothing more.
SPARK_ROLE_RESOURCES = {"pods", "configmaps"}
SPARK_ROLE_VERBS = {"get", "list", "watch", "create", "delete", "deletecollection"}


def is_spark(env: str) -> bool:
    return env.endswith(SPARK_SUFFIX)


class RenderError(RuntimeError):
    pass


def _kustomize(path: Path, what: str) -> tuple[dict[str, Any], ...]:
    assert KUBECTL is not None
    try:
        proc = subprocess.run(
            [KUBECTL, "kustomize", str(path)],
            capture_output=True,
            text=True,
            timeout=RENDER_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RenderError(f"kubectl kustomize {what} took over {exc.timeout}s") from None
    if proc.returncode != 0:
        raise RenderError(f"kubectl kustomize {what} failed:\n{proc.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


@functools.cache
def render(env: str) -> tuple[dict[str, Any], ...]:
    """The objects `kubectl kustomize manifests/overlays/<env>` prints; for ``<env>+spark``,
    those of an overlay that lists overlays/<env> and components/spark (kustomize takes
    only relative paths, so the temporary kustomization names them relative to itself)."""
    if not is_spark(env):
        return _kustomize(MANIFESTS / "overlays" / env, f"overlays/{env}")
    base = env.removesuffix(SPARK_SUFFIX)
    with tempfile.TemporaryDirectory(prefix="spark-overlay-") as tmp:
        overlay = MANIFESTS / "overlays" / base
        doc = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": NAMESPACE,
            "resources": [os.path.relpath(overlay, tmp)],
            "components": [os.path.relpath(SPARK_COMPONENT, tmp)],
            "images": [SPARK_IMAGE_PIN],
        }
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(doc))
        return _kustomize(Path(tmp), f"overlays/{base} + components/spark")


def embedded_pods(objs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """The pods of EMBEDDED_POD_TEMPLATES, named after their ConfigMap."""
    pods = []
    for cm in of_kind(objs, "ConfigMap"):
        key = EMBEDDED_POD_TEMPLATES.get(base_name(cm["metadata"]["name"]))
        if key is None:
            continue
        pod = yaml.safe_load(cm["data"][key])
        pod["metadata"]["name"] = base_name(cm["metadata"]["name"])
        pod["metadata"]["namespace"] = cm["metadata"]["namespace"]
        pods.append(pod)
    return pods


def is_embedded(obj: dict[str, Any]) -> bool:
    return obj["kind"] == "Pod" and obj["metadata"]["name"] in EMBEDDED_POD_TEMPLATES


@functools.cache
def objects(env: str) -> tuple[dict[str, Any], ...]:
    """The render's objects and the pods its ConfigMaps carry as templates."""
    objs = render(env)
    return (*objs, *embedded_pods(objs))


def _rendered_or_empty(env: str) -> tuple[dict[str, Any], ...]:
    """For building parameters at collection; test_overlay_renders reports the failure."""
    try:
        return render(env)
    except RenderError:
        return ()


# Object helpers ---------------------------------------------------------------------
def ident(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def of_kind(objs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o.get("kind") == kind]


def one(objs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in of_kind(objs, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_template(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod template (metadata + spec) of a pod-bearing object."""
    kind = obj["kind"]
    if kind == "Pod":
        return {"metadata": obj["metadata"], "spec": obj["spec"]}
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return obj["spec"]["template"]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every (path, key, value) in a nested structure."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            yield here, key, value
            yield from walk(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def selector_labels(selector: dict[str, Any] | None) -> dict[str, str]:
    return dict((selector or {}).get("matchLabels") or {})


def is_version_like(key: str) -> bool:
    return "version" in key.lower()


def base_name(name: str) -> str:
    m = HASHED_NAME_RE.match(name)
    return m.group("base") if m else name


def workloads(objs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [o for o in objs if o.get("kind") in POD_KINDS]


def _workload_params() -> list[Any]:
    params = []
    for env in RENDERS:
        objs = _rendered_or_empty(env)
        for obj in workloads((*objs, *embedded_pods(objs))):
            params.append(pytest.param(env, ident(obj), id=f"{env}-{ident(obj)}"))
    return params


WORKLOAD_PARAMS = _workload_params()


def workload(env: str, ref: str) -> dict[str, Any]:
    kind, name = ref.split("/", 1)
    return one(objects(env), kind, name)


# Rendering and schema ---------------------------------------------------------------
def test_overlays_exist() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS), f"overlays found: {OVERLAYS}"


@pytest.mark.parametrize("env", RENDERS)
def test_overlay_renders(env: str) -> None:
    objs = render(env)
    assert objs, f"overlays/{env} rendered nothing"
    for obj in objs:
        assert obj.get("apiVersion") and obj.get("kind"), obj
        assert obj.get("metadata", {}).get("name"), obj
    idents = [ident(o) for o in objs]
    assert len(idents) == len(set(idents)), f"duplicate objects in overlays/{env}"


@pytest.mark.parametrize("version", [OLDEST_K8S, NEWEST_K8S])
@pytest.mark.parametrize("env", RENDERS)
def test_objects_validate_against_schema(env: str, version: str) -> None:
    errors = []
    for obj in objects(env):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{ident(obj)}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{ident(obj)}: {exc.message}")
    assert not errors, f"overlays/{env} against Kubernetes {version}:\n" + "\n".join(errors)


def test_newest_bundled_version_is_newer_than_oldest_supported() -> None:
    major, minor = (int(p) for p in NEWEST_K8S.split(".")[:2])
    assert (major, minor) >= (1, 30)


# Pod security (restricted PSS + house rules), per workload --------------------------
@pytest.mark.parametrize(("env", "ref"), WORKLOAD_PARAMS)
def test_pod_security_context_is_restricted(env: str, ref: str) -> None:
    spec = pod_template(workload(env, ref))["spec"]
    sc = spec.get("securityContext")
    assert sc, f"{ref}: pod securityContext missing"
    assert sc.get("runAsNonRoot") is True, f"{ref}: runAsNonRoot must be true"
    for field in ("runAsUser", "runAsGroup", "fsGroup"):
        value = sc.get(field)
        assert isinstance(value, int) and value > 0, f"{ref}: {field} must be a non-zero id"
    assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", ref
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(field), f"{ref}: {field} is not allowed"
    if is_spark(env) and ref == SPARK_DRIVER:
        # The exception, explicit: test_only_the_spark_driver_mounts_a_token bounds it.
        assert spec.get("automountServiceAccountToken") is True, f"{ref}: the driver's token"
        assert spec.get("serviceAccountName") == SPARK_DRIVER_SA, ref
    else:
        assert spec.get("automountServiceAccountToken") is False, f"{ref}: no token"
    for vol in spec.get("volumes", []):
        assert "hostPath" not in vol, f"{ref}: hostPath volume {vol['name']}"


@pytest.mark.parametrize(("env", "ref"), WORKLOAD_PARAMS)
def test_containers_are_restricted_and_read_only(env: str, ref: str) -> None:
    spec = pod_template(workload(env, ref))["spec"]
    for c in containers(spec):
        sc = c.get("securityContext")
        where = f"{ref} container {c['name']}"
        assert sc, f"{where}: securityContext missing"
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not sc.get("capabilities", {}).get("add"), f"{where}: adds capabilities"
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("runAsNonRoot") is True, where
        assert not sc.get("privileged"), where
        if "runAsUser" in sc:
            assert sc["runAsUser"] > 0, where


@pytest.mark.parametrize(("env", "ref"), WORKLOAD_PARAMS)
def test_writable_paths_are_emptydirs(env: str, ref: str) -> None:
    spec = pod_template(workload(env, ref))["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    claims = {
        t["metadata"]["name"]
        for t in workload(env, ref).get("spec", {}).get("volumeClaimTemplates", [])
    }
    for vol in volumes.values():
        if "emptyDir" in vol:
            assert vol["emptyDir"].get("sizeLimit"), (
                f"{ref}: emptyDir {vol['name']} has no sizeLimit"
            )
    for c in containers(spec):
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{ref} container {c['name']}: no writable /tmp"
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]], f"{ref}: /tmp is not an emptyDir"
        for m in mounts.values():
            name = m["name"]
            assert name in volumes or name in claims, f"{ref}: mount of unknown volume {name}"
            if name in volumes and ("configMap" in volumes[name] or "secret" in volumes[name]):
                assert m.get("readOnly") is True, f"{ref}: {m['mountPath']} should be readOnly"


@pytest.mark.parametrize(("env", "ref"), WORKLOAD_PARAMS)
def test_resources_have_requests_and_limits(env: str, ref: str) -> None:
    for c in containers(pod_template(workload(env, ref))["spec"]):
        res = c.get("resources", {})
        for section in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                assert res.get(section, {}).get(resource), (
                    f"{ref} container {c['name']}: resources.{section}.{resource} missing"
                )


@pytest.mark.parametrize(("env", "ref"), WORKLOAD_PARAMS)
def test_probes(env: str, ref: str) -> None:
    obj = workload(env, ref)
    for c in pod_template(obj)["spec"].get("containers", []):
        where = f"{ref} container {c['name']}"
        if obj["kind"] in JOB_KINDS or is_embedded(obj):
            # Run-to-completion pods (and Spark's executors, which end with their job)
            # are exempt (see the module docstring); a readiness probe on one is a mistake.
            assert "readinessProbe" not in c, f"{where}: a Job pod serves nothing"
            continue
        assert c.get("livenessProbe"), f"{where}: livenessProbe missing"
        assert c.get("readinessProbe"), f"{where}: readinessProbe missing"


@pytest.mark.parametrize(("env", "ref"), WORKLOAD_PARAMS)
def test_images_are_pinned(env: str, ref: str) -> None:
    obj = workload(env, ref)
    for c in containers(pod_template(obj)["spec"]):
        if is_embedded(obj):
            # Spark sets it from spark.kubernetes.container.image (test_spark_driver_wiring).
            assert "image" not in c, f"{ref}: the template's image would be overwritten"
            continue
        image = c["image"]
        last = image.rsplit("/", 1)[-1]
        assert "@sha256:" in image or ":" in last, f"{ref}: image {image} has no tag"
        assert not image.endswith(":latest"), f"{ref}: image {image} uses :latest"
        assert "/" in image, f"{ref}: image {image} is an unpinned placeholder (see images:)"


@pytest.mark.parametrize(("env", "ref"), WORKLOAD_PARAMS)
def test_service_account_exists_without_token(env: str, ref: str) -> None:
    spec = pod_template(workload(env, ref))["spec"]
    name = spec.get("serviceAccountName")
    assert name and name != "default", f"{ref}: needs its own ServiceAccount"
    sa = one(render(env), "ServiceAccount", name)
    assert sa.get("automountServiceAccountToken") is False, f"ServiceAccount/{name}"


@pytest.mark.parametrize(("env", "ref"), WORKLOAD_PARAMS)
def test_service_links_are_off(env: str, ref: str) -> None:
    # Service links would inject CRISPOPS_*_SERVICE_HOST/_PORT variables (our Services
    # are named crispops-*) into the CRISPOPS_ namespace that Settings reads.
    spec = pod_template(workload(env, ref))["spec"]
    assert spec.get("enableServiceLinks") is False, f"{ref}: set enableServiceLinks: false"


@pytest.mark.parametrize(("env", "ref"), WORKLOAD_PARAMS)
def test_workload_is_covered_by_a_network_policy(env: str, ref: str) -> None:
    labels = pod_template(workload(env, ref))["metadata"]["labels"]
    covering = [
        np
        for np in of_kind(render(env), "NetworkPolicy")
        if matches(np["spec"].get("podSelector", {}), labels)
        and {"Ingress", "Egress"} <= set(np["spec"].get("policyTypes", []))
    ]
    assert covering, f"{ref}: no NetworkPolicy restricts both its ingress and egress"


# Whole-overlay checks ---------------------------------------------------------------
def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels + matchExpressions) selects these labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@pytest.mark.parametrize("env", RENDERS)
def test_no_empty_security_context(env: str) -> None:
    empties = [
        f"{ident(obj)}: {path}"
        for obj in render(env)
        for path, key, value in walk(obj)
        if key == "securityContext" and not value
    ]
    assert not empties, "empty securityContext: " + ", ".join(empties)


@pytest.mark.parametrize("env", RENDERS)
def test_no_inline_secret_values(env: str) -> None:
    objs = render(env)
    for secret in of_kind(objs, "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), (
            f"{ident(secret)} carries values; reference a Secret created out of band instead"
        )
    for obj in workloads(objs):
        for c in containers(pod_template(obj)["spec"]):
            for var in c.get("env", []):
                if SECRET_NAME_RE.search(var["name"]):
                    assert "value" not in var, f"{ident(obj)}: env {var['name']} is inline"
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    assert ref, f"{ident(obj)}: env {var['name']} must come from a Secret"
                    assert ref["name"] in KNOWN_SECRETS, (ident(obj), var["name"])
    for cm in of_kind(objs, "ConfigMap"):
        for key, value in (cm.get("data") or {}).items():
            assert not SECRET_NAME_RE.search(key), f"{ident(cm)}: key {key} looks secret"
            # Any password in a config file must be a ${VAR} that Feast expands.
            for m in re.finditer(r"password\s*[=:]\s*(\S+)", str(value), re.I):
                assert m.group(1).startswith("${"), f"{ident(cm)}: inline password in {key}"


@pytest.mark.parametrize("env", RENDERS)
def test_every_object_has_the_standard_labels(env: str) -> None:
    missing = []
    for obj in render(env):
        labels = obj["metadata"].get("labels", {})
        missing += [f"{ident(obj)}: {k}" for k in STANDARD_LABELS if not labels.get(k)]
        if obj["kind"] in POD_KINDS:
            tmpl = pod_template(obj)["metadata"].get("labels", {})
            missing += [f"{ident(obj)} pod template: {k}" for k in STANDARD_LABELS if k not in tmpl]
        assert labels.get("app.kubernetes.io/part-of", "crispops") == "crispops", ident(obj)
    assert not missing, "missing labels:\n" + "\n".join(missing)


@pytest.mark.parametrize("env", RENDERS)
def test_selectors_are_name_and_instance_only(env: str) -> None:
    for obj in render(env):
        kind = obj["kind"]
        spec = obj.get("spec", {})
        if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "PodDisruptionBudget"}:
            sel = spec["selector"]
            assert set(sel) == {"matchLabels"}, f"{ident(obj)}: selector uses {set(sel)}"
            assert set(sel["matchLabels"]) == SELECTOR_KEYS, f"{ident(obj)}: {sel}"
        if kind == "Service" and "selector" in spec:
            assert set(spec["selector"]) == SELECTOR_KEYS, f"{ident(obj)}: {spec['selector']}"
        if kind in POD_KINDS and kind != "Pod" and kind not in JOB_KINDS:
            tmpl_labels = pod_template(obj)["metadata"]["labels"]
            sel_labels = selector_labels(spec["selector"])
            assert sel_labels.items() <= tmpl_labels.items(), (
                f"{ident(obj)}: selector {sel_labels} does not match its pod template"
            )
        # Nothing version-like in any selector of any kind (label selectors,
        # Service selectors, topology spread, NetworkPolicy peers).
        for path, key, value in walk(obj):
            if key in {"selector", "podSelector", "labelSelector", "namespaceSelector"}:
                keys = set(value.get("matchLabels") or {}) if "matchLabels" in value else set()
                keys |= {e["key"] for e in value.get("matchExpressions") or []}
                if kind == "Service" and key == "selector":
                    keys = set(value)
                bad = sorted(k for k in keys if is_version_like(k))
                assert not bad, f"{ident(obj)}: {path} selects on {bad}"


@pytest.mark.parametrize("env", RENDERS)
def test_services_select_a_workload_and_its_ports(env: str) -> None:
    objs = render(env)
    for svc in of_kind(objs, "Service"):
        targets = [
            w
            for w in workloads(objs)
            if w["kind"] in {"Deployment", "StatefulSet"}
            and svc["spec"]["selector"].items() <= pod_template(w)["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, f"{ident(svc)} selects {[ident(t) for t in targets]}"
        ports = {
            (p.get("name"), p["containerPort"])
            for c in pod_template(targets[0])["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if isinstance(target, str):
                assert target in {n for n, _ in ports}, f"{ident(svc)}: no container port {target}"
            else:
                assert target in {p for _, p in ports}, f"{ident(svc)}: no container port {target}"
        if targets[0]["kind"] == "StatefulSet":
            assert targets[0]["spec"]["serviceName"] == svc["metadata"]["name"]


@pytest.mark.parametrize("env", RENDERS)
def test_hpas_target_existing_deployments(env: str) -> None:
    objs = render(env)
    hpas = of_kind(objs, "HorizontalPodAutoscaler")
    assert hpas, f"overlays/{env} has no HorizontalPodAutoscaler"
    for hpa in hpas:
        assert hpa["apiVersion"] == "autoscaling/v2", ident(hpa)
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment"), ident(hpa)
        deploy = one(objs, "Deployment", ref["name"])
        spec = hpa["spec"]
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"], ident(hpa)
        assert deploy["spec"]["replicas"] == spec["minReplicas"], (
            f"{ident(deploy)} replicas should equal {ident(hpa)} minReplicas"
        )
        metrics = {m["resource"]["name"] for m in spec["metrics"] if m["type"] == "Resource"}
        assert "cpu" in metrics, ident(hpa)
    # Every Deployment is autoscaled.
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in hpas}
    assert {d["metadata"]["name"] for d in of_kind(objs, "Deployment")} <= scaled


@pytest.mark.parametrize("env", RENDERS)
def test_pdbs_select_existing_workloads(env: str) -> None:
    objs = render(env)
    for pdb in of_kind(objs, "PodDisruptionBudget"):
        assert pdb["apiVersion"] == "policy/v1", ident(pdb)
        sel = pdb["spec"]["selector"]
        assert any(matches(sel, pod_template(w)["metadata"]["labels"]) for w in workloads(objs)), (
            f"{ident(pdb)} selects no workload"
        )


@pytest.mark.parametrize("env", RENDERS)
def test_namespace_enforces_restricted(env: str) -> None:
    objs = render(env)
    ns = one(objs, "Namespace", NAMESPACE)
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels.get(f"pod-security.kubernetes.io/{mode}") == "restricted", mode
    for obj in objs:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{ident(obj)} namespace"


@pytest.mark.parametrize("env", RENDERS)
def test_generated_configmaps_are_hashed_and_referenced(env: str) -> None:
    objs = render(env)
    configmaps = {cm["metadata"]["name"] for cm in of_kind(objs, "ConfigMap")}
    by_base = {base_name(n): n for n in configmaps if HASHED_NAME_RE.match(n)}
    expected = GENERATED_CONFIGMAPS | (SPARK_CONFIGMAPS if is_spark(env) else set())
    assert set(by_base) >= expected, f"hash-suffixed ConfigMaps: {sorted(configmaps)}"
    # Every ConfigMap reference in a pod names a ConfigMap of this render, by its hashed name.
    for obj in workloads(objs):
        spec = pod_template(obj)["spec"]
        refs = [v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v]
        for c in containers(spec):
            refs += [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
            refs += [
                e["valueFrom"]["configMapKeyRef"]["name"]
                for e in c.get("env", [])
                if "configMapKeyRef" in e.get("valueFrom", {})
            ]
        for ref in refs:
            assert ref in configmaps, f"{ident(obj)} references missing ConfigMap {ref}"
            assert HASHED_NAME_RE.match(ref), f"{ident(obj)} references unhashed ConfigMap {ref}"
    model = one(objs, "Deployment", "crispops-model-service")
    spec = pod_template(model)["spec"]
    volume = next(v for v in spec["volumes"] if "configMap" in v)
    assert volume["configMap"]["name"] == by_base["crispops-feature-store"]
    env_from = {e["configMapRef"]["name"] for e in spec["containers"][0]["envFrom"]}
    assert {
        by_base["crispops-feature-store-env"],
        by_base["crispops-model-service-env"],
    } <= env_from


@pytest.mark.parametrize("env", RENDERS)
def test_feast_workloads_have_every_variable_feature_store_yaml_needs(env: str) -> None:
    """feature_store.yaml's ${VAR}s are all set, from the ConfigMap or the Secret (each
    feature_store.yaml of the render: the online-only one and, with Spark, the driver's)."""
    objs = render(env)
    cms = {cm["metadata"]["name"]: cm.get("data") or {} for cm in of_kind(objs, "ConfigMap")}
    users = 0
    for store_cm in of_kind(objs, "ConfigMap"):
        if base_name(store_cm["metadata"]["name"]) not in FEATURE_STORE_CONFIGMAPS:
            continue
        config = yaml.safe_load(store_cm["data"]["feature_store.yaml"])  # drops comments
        needed = {
            var
            for _, _, value in walk(config)
            if isinstance(value, str)
            for var in re.findall(r"\$\{(\w+)\}", value)
        }
        assert needed, "feature_store.yaml expands no variables?"
        for obj in workloads(objs):
            spec = pod_template(obj)["spec"]
            if not any(
                v.get("configMap", {}).get("name") == store_cm["metadata"]["name"]
                for v in spec.get("volumes", [])
            ):
                continue
            users += 1
            for c in spec["containers"]:
                have = {e["name"] for e in c.get("env", [])}
                for e in c.get("envFrom", []):
                    have |= {k for k, v in cms[e["configMapRef"]["name"]].items() if v}
                assert needed <= have, f"{ident(obj)}: missing {sorted(needed - have)}"
                mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
                assert "/etc/feast" in mounts, f"{ident(obj)}: feature_store.yaml not at /etc/feast"
    assert users >= 3, (
        "model service, feature server and materialization all read feature_store.yaml"
    )


@pytest.mark.parametrize("env", RENDERS)
def test_checkov_skips_carry_a_reason(env: str) -> None:
    for obj in render(env):
        for key, value in (obj["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                # checkov splits on "=": exactly one, or it crashes.
                check, sep, reason = value.partition("=")
                assert re.fullmatch(r"CKV2?_K8S_\d+", check), f"{ident(obj)} {key}: {value}"
                assert sep and "=" not in reason, f"{ident(obj)} {key}: one '=' only"
                assert len(reason.split()) >= 8, f"{ident(obj)} {key}: justify the skip"


# The workloads themselves -----------------------------------------------------------
@pytest.mark.parametrize("env", RENDERS)
def test_model_service_contract(env: str) -> None:
    objs = render(env)
    deploy = one(objs, "Deployment", "crispops-model-service")
    c = pod_template(deploy)["spec"]["containers"][0]
    assert c["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    secret_keys = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for e in c["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert secret_keys == {"REDIS_PASSWORD", "POSTGRES_PASSWORD", "dsn"}
    # the prediction log's DSN: from a Secret, by the variable monitoring.dsn_env names
    dsn = next(e for e in c["env"] if e["name"] == "CRISPOPS_PREDICTION_LOG_DSN")
    assert dsn["valueFrom"]["secretKeyRef"]["name"] == "crispops-prediction-log"
    svc = one(objs, "Service", "crispops-model-service")
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 3000, "targetPort": "http", "protocol": "TCP"}
    ]
    np = one(objs, "NetworkPolicy", "crispops-model-service")
    ingress_ports = [p for rule in np["spec"]["ingress"] for p in rule.get("ports", [])]
    assert ingress_ports == [{"protocol": "TCP", "port": 3000}], "ingress to port 3000 only"
    egress_peers = [
        peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        for rule in np["spec"]["egress"]
        for peer in rule.get("to", [])
    ]
    assert {"redis", "feature-server"} <= set(egress_peers)


@pytest.mark.parametrize("env", RENDERS)
def test_feature_server_runs_feast_serve(env: str) -> None:
    deploy = one(render(env), "Deployment", "crispops-feature-server")
    c = pod_template(deploy)["spec"]["containers"][0]
    argv = [*c["command"], *c["args"]]
    # `-c` before `serve` is Feast's repo directory; after it, a TLS certificate.
    assert argv[:4] == ["feast", "-c", "/etc/feast", "serve"], argv
    assert argv[argv.index("-p") + 1] == "6566"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize("env", RENDERS)
def test_materialization_cronjob(env: str) -> None:
    cron = one(render(env), "CronJob", "crispops-materialization")
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == 3
    assert spec["failedJobsHistoryLimit"] == 3
    assert spec["startingDeadlineSeconds"] > 0
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 2
    assert 0 < job["activeDeadlineSeconds"] < 3600, "a run must end before the next hourly one"
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    argv = " ".join(
        [*pod["containers"][0].get("command", []), *pod["containers"][0].get("args", [])]
    )
    assert "feast -c /etc/feast materialize-incremental" in argv
    assert "$(date -u" in argv, "materialize-incremental needs END_TS (now, UTC)"


@pytest.mark.parametrize("env", RENDERS)
def test_monitoring_cronjob(env: str) -> None:
    """`crispops monitor --act` hourly: the log from PostgreSQL, the state on a claim that
    outlives the pod (the ledger keeps --act once per window), retraining submitted."""
    objs = render(env)
    cron = one(objs, "CronJob", "crispops-monitoring")
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    job = spec["jobTemplate"]["spec"]
    assert 0 < job["activeDeadlineSeconds"] < 3600, "a run must end before the next hourly one"
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (c,) = pod["containers"]
    argv = [*c.get("command", []), *c.get("args", [])]
    assert argv[:2] == ["crispops", "monitor"] and "--act" in argv, argv
    assert c["image"].rsplit(":", 1)[0].endswith("/crispops-components")
    env_vars = {e["name"]: e for e in c["env"]}
    assert env_vars["CRISPOPS_MONITORING__SINK"]["value"] == "postgres"
    assert env_vars["CRISPOPS_CLUSTER__KFP_HOST"]["value"].startswith("http")
    dsn = env_vars["CRISPOPS_PREDICTION_LOG_DSN"]["valueFrom"]["secretKeyRef"]
    assert dsn["name"] == "crispops-prediction-log"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes[mounts["/app/.crispops"]]["persistentVolumeClaim"]["claimName"]
    pvc = one(objs, "PersistentVolumeClaim", claim)
    assert pvc["spec"]["resources"]["requests"]["storage"]
    np = one(objs, "NetworkPolicy", "crispops-monitoring")
    assert not np["spec"].get("ingress"), "the monitor serves nothing"
    egress_ports = {p["port"] for rule in np["spec"]["egress"] for p in rule.get("ports", [])}
    assert {53, 5432, 8888} <= egress_ports


# Environments -----------------------------------------------------------------------
def _feature_store_env(objs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    return next(
        cm["data"]
        for cm in of_kind(objs, "ConfigMap")
        if base_name(cm["metadata"]["name"]) == "crispops-feature-store-env"
    )


@pytest.mark.skipif("dev" not in OVERLAYS, reason="no dev overlay")
def test_dev_is_small_with_in_cluster_stores() -> None:
    objs = render("dev")
    for deploy in of_kind(objs, "Deployment"):
        assert deploy["spec"]["replicas"] == 1, ident(deploy)
    for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] == 1, ident(hpa)
    one(objs, "StatefulSet", "crispops-redis")
    one(objs, "StatefulSet", "crispops-postgres")
    settings = _feature_store_env(objs)
    assert settings["REDIS_HOST"] == "crispops-redis"
    assert settings["POSTGRES_HOST"] == "crispops-postgres"
    redis = pod_template(one(objs, "StatefulSet", "crispops-redis"))["spec"]
    assert redis["securityContext"]["runAsUser"] == 999
    c = redis["containers"][0]
    assert c["image"].endswith("redis:7.2.5")
    assert c["livenessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
    # Without REDISCLI_AUTH, `redis-cli ping` answers NOAUTH and still exits 0.
    assert "REDISCLI_AUTH" in {e["name"] for e in c["env"]}


@pytest.mark.skipif("prod" not in OVERLAYS, reason="no prod overlay")
def test_prod_is_replicated_with_pdbs_and_managed_stores() -> None:
    objs = render("prod")
    pdbs = of_kind(objs, "PodDisruptionBudget")
    for deploy in of_kind(objs, "Deployment"):
        assert deploy["spec"]["replicas"] >= 3, ident(deploy)
        labels = pod_template(deploy)["metadata"]["labels"]
        assert any(matches(p["spec"]["selector"], labels) for p in pdbs), f"{ident(deploy)}: no PDB"
    for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] >= 3, ident(hpa)
        assert hpa["spec"]["maxReplicas"] == 10, ident(hpa)
    assert not of_kind(objs, "StatefulSet"), "prod uses managed Redis/PostgreSQL"
    settings = _feature_store_env(objs)
    assert settings["REDIS_HOST"] and settings["REDIS_HOST"] != "crispops-redis"
    assert settings["POSTGRES_HOST"] and settings["POSTGRES_HOST"] != "crispops-postgres"


@pytest.mark.parametrize("env", RENDERS)
def test_overlays_pin_both_images(env: str) -> None:
    images = {
        c["image"] for w in workloads(render(env)) for c in containers(pod_template(w)["spec"])
    }
    names = {i.rsplit(":", 1)[0].rsplit("/", 1)[-1] for i in images}
    assert {"crispops-model-service", "crispops-components"} <= names, images


# Sources ----------------------------------------------------------------------------
def test_manifest_feature_store_yaml_matches_the_feature_repo() -> None:
    source = ROOT / "feature_repo" / "feature_store.cluster.yaml"
    copy = MANIFESTS / "base" / "feature-store-config" / "feature_store.yaml"
    if not source.is_file():
        pytest.skip(f"{source.relative_to(ROOT)} does not exist yet")
    assert copy.read_bytes() == source.read_bytes(), (
        f"{copy.relative_to(ROOT)} must be a byte-for-byte copy of {source.relative_to(ROOT)}: "
        f"cp {source.relative_to(ROOT)} {copy.relative_to(ROOT)}"
    )


def _kustomizations() -> list[Path]:
    return sorted(MANIFESTS.rglob("kustomization.yaml"))


@pytest.mark.parametrize("path", _kustomizations(), ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_kustomizations_patch_by_name_never_by_index(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert "commonLabels" not in doc, f"{path}: use labels: (commonLabels leaks into selectors)"
    assert "patchesJson6902" not in doc, f"{path}: JSON patches address lists by index"
    for patch in doc.get("patches", []):
        text = patch.get("patch") or (path.parent / patch["path"]).read_text()
        body = yaml.safe_load(text)
        assert isinstance(body, dict), f"{path}: {patch} is not a strategic merge patch"
        assert body.get("metadata", {}).get("name"), f"{path}: {patch} does not name its object"
    for replacement in doc.get("replacements", []):
        for target in replacement.get("targets", []):
            for field in target.get("fieldPaths", []):
                assert not re.search(r"\.\d+(\.|$)", field), f"{path}: index in {field}"
    for image in doc.get("images", []):
        assert image.get("newTag") or image.get("digest"), f"{path}: {image} pins nothing"
        assert image.get("newTag") != "latest", f"{path}: {image} uses latest"


# Spark on the cluster (components/spark) ------------------------------------------------
@pytest.mark.parametrize("env", RENDERS)
def test_only_the_spark_driver_mounts_a_token(env: str) -> None:
    """The exception to "no service-account token", as narrow as it is meant to be: one
    pod (the Spark driver), one ServiceAccount, one namespaced Role over its executor
    pods and their ConfigMap; a render without Spark has no token and no RBAC at all."""
    objs = objects(env)
    mounting = {
        ident(w)
        for w in workloads(objs)
        if pod_template(w)["spec"].get("automountServiceAccountToken") is not False
    }
    assert mounting == ({SPARK_DRIVER} if is_spark(env) else set()), mounting
    assert not of_kind(objs, "ClusterRole") and not of_kind(objs, "ClusterRoleBinding")
    if not is_spark(env):
        assert not of_kind(objs, "Role") and not of_kind(objs, "RoleBinding")
        return
    driver = pod_template(one(objs, *SPARK_DRIVER.split("/")))["spec"]
    assert driver["serviceAccountName"] == SPARK_DRIVER_SA
    sa = one(objs, "ServiceAccount", SPARK_DRIVER_SA)
    assert sa.get("automountServiceAccountToken") is False, "only the driver's pod opts in"
    users = {
        ident(w)
        for w in workloads(objs)
        if pod_template(w)["spec"].get("serviceAccountName") == SPARK_DRIVER_SA
    }
    assert users == {SPARK_DRIVER}, users
    (binding,) = of_kind(objs, "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SPARK_DRIVER_SA, "namespace": NAMESPACE}
    ]
    assert binding["roleRef"]["kind"] == "Role"
    role = one(objs, "Role", binding["roleRef"]["name"])
    assert len(of_kind(objs, "Role")) == 1
    for rule in role["rules"]:
        assert rule["apiGroups"] == [""], rule
        assert set(rule["resources"]) <= SPARK_ROLE_RESOURCES, rule
        assert set(rule["verbs"]) <= SPARK_ROLE_VERBS, rule
        assert not rule.get("resourceNames"), rule
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    # Spark cannot work with less: it creates and watches executors and deletes them by label.
    assert {("pods", v) for v in ("create", "watch", "list", "delete")} <= granted
    assert ("configmaps", "create") in granted


def _spark_conf(objs: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], dict[str, str]]:
    cm = next(
        cm
        for cm in of_kind(objs, "ConfigMap")
        if base_name(cm["metadata"]["name"]) == "crispops-feature-store-spark"
    )
    config = yaml.safe_load(cm["data"]["feature_store.yaml"])
    return cm, config["offline_store"]["spark_conf"]


@pytest.mark.parametrize("env", SPARK_RENDERS)
def test_spark_driver_wiring(env: str) -> None:
    """The materialization job is the Spark driver: the Spark image (the one its conf
    names for the executors), the Spark feature store config, the executor pod template
    where the conf looks for it; the serving pods keep the online-only config."""
    from crispops.config import (
        SPARK_BLOCK_MANAGER_PORT,
        SPARK_DRIVER_PORT,
        SPARK_EXECUTOR_SERVICE_ACCOUNT,
    )

    objs = objects(env)
    store_cm, conf = _spark_conf(objs)
    config = yaml.safe_load(store_cm["data"]["feature_store.yaml"])
    assert config["offline_store"]["type"] == "spark"
    assert config["batch_engine"]["type"] == "spark.engine"
    assert config["batch_engine"]["spark_conf"] == conf, "one Spark session: one conf"
    assert conf["spark.master"].startswith("k8s://")
    assert conf["spark.submit.deployMode"] == "client"
    assert conf["spark.kubernetes.namespace"] == NAMESPACE

    cron = one(objs, "CronJob", "crispops-materialization")
    pod = pod_template(cron)["spec"]
    (c,) = pod["containers"]
    assert c["image"] == conf["spark.kubernetes.container.image"], "driver and executors"
    assert c["image"].endswith("-spark"), c["image"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"]}
    assert mounts["/etc/feast"]["configMap"]["name"] == store_cm["metadata"]["name"]
    template_path = Path(conf["spark.kubernetes.executor.podTemplateFile"])
    template_cm = mounts[str(template_path.parent)]["configMap"]["name"]
    assert base_name(template_cm) == "crispops-spark-executor-template"
    assert template_path.name in one(objs, "ConfigMap", template_cm)["data"]
    # The driver's JVM (spark.driver.memory) fits its container's limit with room for Python.
    heap = int(conf["spark.driver.memory"].rstrip("g"))
    limit = c["resources"]["limits"]["memory"]
    assert limit.endswith("Gi") and int(limit.removesuffix("Gi")) > heap, limit

    executor = one(objs, "Pod", "crispops-spark-executor-template")
    (ec,) = executor["spec"]["containers"]
    assert ec["name"] == conf["spark.kubernetes.executor.podTemplateContainerName"]
    assert ec["command"] == ["/usr/local/bin/crispops-spark-executor"]
    sa_name = conf["spark.kubernetes.authenticate.executor.serviceAccountName"]
    assert sa_name == SPARK_EXECUTOR_SERVICE_ACCOUNT == executor["spec"]["serviceAccountName"]
    assert one(objs, "ServiceAccount", sa_name)["automountServiceAccountToken"] is False

    # The ports the conf fixes are the ones the NetworkPolicies open, both ways.
    assert conf["spark.driver.port"] == str(SPARK_DRIVER_PORT)
    assert conf["spark.driver.blockManager.port"] == str(SPARK_BLOCK_MANAGER_PORT)
    assert conf["spark.blockManager.port"] == str(SPARK_BLOCK_MANAGER_PORT)
    driver_labels = pod_template(cron)["metadata"]["labels"]
    executor_labels = executor["metadata"]["labels"]

    def ports_open(src: dict[str, str], dst: dict[str, str]) -> set[int]:
        """TCP ports open from src to dst by both dst's ingress and src's egress rules."""

        def rules(selected: dict[str, str], direction: str, peer: dict[str, str]) -> set[int]:
            open_ = set()
            for np in of_kind(objs, "NetworkPolicy"):
                if not matches(np["spec"]["podSelector"], selected):
                    continue
                for rule in np["spec"].get(direction, []):
                    peers = rule.get("from" if direction == "ingress" else "to")
                    if peers is None or any(
                        "podSelector" in p
                        and "namespaceSelector" not in p
                        and matches(p["podSelector"], peer)
                        for p in peers
                    ):
                        open_ |= {p["port"] for p in rule.get("ports", [])}
            return open_

        return rules(dst, "ingress", src) & rules(src, "egress", dst)

    assert {SPARK_DRIVER_PORT, SPARK_BLOCK_MANAGER_PORT} <= ports_open(
        executor_labels, driver_labels
    )
    assert SPARK_BLOCK_MANAGER_PORT in ports_open(driver_labels, executor_labels)
    assert SPARK_BLOCK_MANAGER_PORT in ports_open(executor_labels, executor_labels)
    # Executors write to the online store.
    if env.startswith("dev"):
        redis = pod_template(one(objs, "StatefulSet", "crispops-redis"))["metadata"]["labels"]
        assert 6379 in ports_open(executor_labels, redis)

    for name in ("crispops-model-service", "crispops-feature-server"):
        spec = pod_template(one(objs, "Deployment", name))["spec"]
        stores = {base_name(v["configMap"]["name"]) for v in spec["volumes"] if "configMap" in v}
        assert "crispops-feature-store" in stores, f"{name}: its image has no Java or pyspark"


@pytest.mark.skipif(not SPARK_RENDERS, reason="no dev/prod overlay")
def test_spark_component_feature_store_yaml_is_what_init_writes() -> None:
    """components/spark/feature_store.yaml is `crispops init --engine spark`'s cluster
    file for the demo project, byte for byte, and Feast loads it as a Spark config."""
    from feast.repo_config import load_repo_config

    from crispops.config import SparkSettings
    from crispops.project.render import render_store_yaml

    copy = SPARK_COMPONENT / "feature_store.yaml"
    project = yaml.safe_load(
        (MANIFESTS / "base" / "feature-store-config" / "feature_store.yaml").read_text()
    )["project"]
    expected = render_store_yaml(project, "spark", SparkSettings(), namespace=NAMESPACE)
    assert copy.read_text() == expected["feature_store.cluster.yaml"], (
        f"regenerate {copy.relative_to(ROOT)} with crispops.project.render.render_store_yaml"
    )
    variables = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_HOST", "POSTGRES_DB"}
    variables |= {"REDIS_HOST", "REDIS_PASSWORD"}
    with pytest.MonkeyPatch.context() as mp:
        for name in variables:
            mp.setenv(name, "x")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "feature_store.yaml"
            path.write_text(copy.read_text())
            config = load_repo_config(Path(tmp), path)
    assert config.offline_store.type == "spark"
    assert config.batch_engine.type == "spark.engine"
    assert config.online_store.type == "redis"
