"""Progressive delivery on the cluster: a challenger in shadow or canary beside the champion.

The model: the champion's Deployment stays the one behind the ``crispops-model-service``
Service, and its router (the service's, another module) reads the ConfigMap
``crispops-rollout`` mounted at :data:`ROLLOUT_MOUNT`: ``rollout.json`` holds the mode
(``off``, ``shadow``, ``canary``), the weight (percent of entities answered by the
challenger in canary, or shadowed in shadow), and the challenger's address. The
challenger runs as a second Deployment and Service, ``crispops-model-service-challenger``,
with labels of its own so the champion's Service never selects it. Why a weight in a
ConfigMap rather than two Deployments behind one Service with a replica ratio: the
router hashes entity keys, so one entity always meets the same model (a replica ratio
spreads each client's requests over both); the percentage is exact with two replicas
(a ratio needs ten replicas for 10%); shadow needs a router anyway; and a step is one
ConfigMap write, with no pods started or stopped.

The state of a rollout lives in ``crispops.dev/rollout-*`` annotations on that
ConfigMap, never in the process: strategy, steps, step index, weight, champion and
challenger Bento tags, phase (``running``, ``promoting``, ``rolling-back``, then
``promoted``, ``rolled-back``, ``aborted``) and the champion Deployment's revision
before the rollout. Every write of a step writes the state in the same request, so
a process killed at any point is continued by :meth:`Rollout.resume` from what the
cluster holds. The champion Deployment's own history (``crispops.dev/revision``,
``previous-template``: :mod:`crispops.cluster.rollout`) is what a rollback restores.

The analysis is injected (``analyze(state) -> Verdict``): the CLI reads the
prediction log (:mod:`crispops.monitoring.analysis`), tests feed verdicts.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crispops.cluster.apply import ANNOTATION_PREFIX, FIELD_MANAGER, Applier, ApplyStrategy
from crispops.cluster.images import bento_image
from crispops.cluster.kube import Kube
from crispops.cluster.render import (
    MODEL_SERVICE_DEPLOYMENT,
    find_model_deployment,
    render,
    template_image,
    to_yaml,
)
from crispops.cluster.rollout import (
    PREVIOUS_TEMPLATE_ANNOTATION,
    REVISION_ANNOTATION,
    record_revision,
    rollback,
    wait_for_rollout,
)
from crispops.errors import DeployError
from crispops.monitoring.analysis import Verdict

__all__ = [
    "CHALLENGER_NAME",
    "ROLLOUT_CONFIGMAP",
    "ROLLOUT_MOUNT",
    "Outcome",
    "Rollout",
    "RolloutState",
    "rollout_objects",
]

ROLLOUT_CONFIGMAP = "crispops-rollout"
CHALLENGER_NAME = "crispops-model-service-challenger"
ROLLOUT_MOUNT = "/etc/crispops/rollout"
ROLLOUT_FILE = "rollout.json"
ROLLOUT_VOLUME = "rollout"
STRATEGIES = ("shadow", "canary")
ACTIVE = ("running", "promoting", "rolling-back")

_A = ANNOTATION_PREFIX + "rollout-"
PHASE = _A + "phase"
STRATEGY = _A + "strategy"
STEPS = _A + "steps"
STEP = _A + "step"
WEIGHT = _A + "weight"
CHALLENGER = _A + "challenger"
CHAMPION = _A + "champion"
PREVIOUS_REVISION = _A + "previous-revision"
REASON = _A + "reason"
UPDATED = _A + "updated-at"


@dataclass(frozen=True)
class RolloutState:
    """A rollout as its annotations record it."""

    strategy: str
    steps: list[int]
    step: int
    champion: str  # Bento tags
    challenger: str
    namespace: str
    phase: str = "running"
    previous_revision: int | None = None
    reason: str = ""

    @property
    def weight(self) -> int:
        if self.phase in ("running",):
            return self.steps[self.step]
        return 100 if self.phase in ("promoting", "promoted") else 0

    @property
    def mode(self) -> str:
        return self.strategy if self.phase in ("running", "promoting") else "off"

    def annotations(self) -> dict[str, str]:
        return {
            PHASE: self.phase,
            STRATEGY: self.strategy,
            STEPS: ",".join(map(str, self.steps)),
            STEP: str(self.step),
            WEIGHT: str(self.weight),
            CHAMPION: self.champion,
            CHALLENGER: self.challenger,
            PREVIOUS_REVISION: ""
            if self.previous_revision is None
            else str(self.previous_revision),
            REASON: self.reason[:1000],
            UPDATED: datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def router_config(self) -> dict[str, Any]:
        """What the champion's router reads from ``rollout.json``."""
        return {
            "mode": self.mode,
            "weight": self.weight,
            "challenger_url": f"http://{CHALLENGER_NAME}.{self.namespace}.svc:3000",
            "challenger_bento_tag": self.challenger,
            "champion_bento_tag": self.champion,
        }

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> RolloutState | None:
        meta = obj.get("metadata") or {}
        ann = meta.get("annotations") or {}
        if PHASE not in ann:
            return None
        try:
            prev = ann.get(PREVIOUS_REVISION) or ""
            return cls(
                strategy=ann[STRATEGY],
                steps=[int(w) for w in ann[STEPS].split(",")],
                step=int(ann[STEP]),
                champion=ann[CHAMPION],
                challenger=ann[CHALLENGER],
                namespace=str(meta.get("namespace") or "default"),
                phase=ann[PHASE],
                previous_revision=int(prev) if prev else None,
                reason=ann.get(REASON, ""),
            )
        except (KeyError, ValueError) as exc:
            raise DeployError(
                f"ConfigMap {ROLLOUT_CONFIGMAP}: unreadable rollout annotations ({exc}); "
                "`crispops rollout abort` restores the champion"
            ) from None


@dataclass(frozen=True)
class Outcome:
    """Where a call left the rollout: promoted, rolled-back, aborted, or waiting/running."""

    state: RolloutState
    verdicts: list[Verdict] = field(default_factory=list)
    manifests: str = ""

    @property
    def phase(self) -> str:
        return self.state.phase


# rendering ---------------------------------------------------------------------------------


def _by(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    for o in objects:
        if o.get("kind") == kind and (o.get("metadata") or {}).get("name") == name:
            return o
    return None


def _relabel(labels: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(labels or {})
    if "app.kubernetes.io/name" in out:
        out["app.kubernetes.io/name"] = "model-service-challenger"
    return out


def rollout_objects(
    objects: list[dict[str, Any]], challenger_image: str, state: RolloutState
) -> list[dict[str, Any]]:
    """The overlay's objects (champion image set) plus the challenger and the router's
    ConfigMap; the champion mounts the ConfigMap and may call the challenger."""
    out = copy.deepcopy(objects)
    champion = find_model_deployment(out)
    if champion is None:
        raise DeployError(f"the overlay renders no Deployment {MODEL_SERVICE_DEPLOYMENT}")
    ns = state.namespace
    champ_pod_labels = dict(champion["spec"]["selector"]["matchLabels"])

    # the challenger: the champion's Deployment with its own name, labels and image
    chall = copy.deepcopy(champion)
    chall["metadata"]["name"] = CHALLENGER_NAME
    chall["metadata"]["labels"] = _relabel(chall["metadata"].get("labels"))
    chall["metadata"]["annotations"] = {
        k: v
        for k, v in (chall["metadata"].get("annotations") or {}).items()
        if not k.startswith(ANNOTATION_PREFIX)
    }
    chall["spec"]["replicas"] = 1
    chall["spec"]["selector"]["matchLabels"] = _relabel(chall["spec"]["selector"]["matchLabels"])
    tmpl = chall["spec"]["template"]
    tmpl["metadata"]["labels"] = _relabel(tmpl["metadata"].get("labels"))
    for c in tmpl["spec"].get("topologySpreadConstraints") or []:
        sel = c.get("labelSelector") or {}
        if "matchLabels" in sel:
            sel["matchLabels"] = _relabel(sel["matchLabels"])
    for c in tmpl["spec"]["containers"]:
        if template_image({"spec": {"containers": [c]}}) == template_image(
            champion["spec"]["template"]
        ):
            c["image"] = challenger_image
    chall_pod_labels = dict(chall["spec"]["selector"]["matchLabels"])

    service = _by(out, "Service", MODEL_SERVICE_DEPLOYMENT)
    extra: list[dict[str, Any]] = [chall]
    if service is not None:
        svc = copy.deepcopy(service)
        svc["metadata"]["name"] = CHALLENGER_NAME
        svc["metadata"]["labels"] = _relabel(svc["metadata"].get("labels"))
        svc["spec"]["selector"] = chall_pod_labels
        extra.append(svc)

    policy = _by(out, "NetworkPolicy", MODEL_SERVICE_DEPLOYMENT)
    if policy is not None:
        pol = copy.deepcopy(policy)
        pol["metadata"]["name"] = CHALLENGER_NAME
        pol["metadata"]["labels"] = _relabel(pol["metadata"].get("labels"))
        pol["spec"]["podSelector"] = {"matchLabels": chall_pod_labels}
        # only the champion's router calls the challenger
        pol["spec"]["ingress"] = [
            {
                "from": [{"podSelector": {"matchLabels": champ_pod_labels}}],
                "ports": [{"protocol": "TCP", "port": 3000}],
            }
        ]
        extra.append(pol)
        policy["spec"].setdefault("egress", []).append(
            {
                "to": [{"podSelector": {"matchLabels": chall_pod_labels}}],
                "ports": [{"protocol": "TCP", "port": 3000}],
            }
        )

    # the champion mounts the router's settings (optional: it starts without them)
    pod = champion["spec"]["template"]["spec"]
    pod.setdefault("volumes", []).append(
        {"name": ROLLOUT_VOLUME, "configMap": {"name": ROLLOUT_CONFIGMAP, "optional": True}}
    )
    for c in pod["containers"]:
        if c.get("name") == "model-service" or len(pod["containers"]) == 1:
            c.setdefault("volumeMounts", []).append(
                {"name": ROLLOUT_VOLUME, "mountPath": ROLLOUT_MOUNT, "readOnly": True}
            )
    labels = _relabel(champion["metadata"].get("labels"))
    labels["app.kubernetes.io/name"] = "model-service"
    labels["app.kubernetes.io/component"] = "rollout"
    extra.append(config_map(state, ns, labels))
    return out + extra


def config_map(state: RolloutState, namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": ROLLOUT_CONFIGMAP,
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": state.annotations(),
        },
        "data": {ROLLOUT_FILE: json.dumps(state.router_config(), sort_keys=True)},
    }


def _wired(deployment: Mapping[str, Any] | None) -> bool:
    """Whether the live champion Deployment carries the rollout's volume."""
    volumes = (((deployment or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    return any(v.get("name") == ROLLOUT_VOLUME for v in volumes.get("volumes") or [])


# the controller -------------------------------------------------------------------------------

Analyze = Callable[[RolloutState], Verdict]
Hook = Callable[[RolloutState, Verdict | None], None]


def _nothing(_state: RolloutState, _verdict: Verdict | None) -> None:
    return None


class Rollout:
    """Start, continue, promote or roll back one rollout of one overlay."""

    def __init__(
        self,
        overlay_dir: Path,
        registry: str,
        api_client: Any,
        *,
        analyze: Analyze,
        on_promote: Hook = _nothing,
        on_reject: Hook = _nothing,
        on_step: Hook = _nothing,
        step_interval_s: float = 0.0,
        wait_s: float = 0.0,
        poll_s: float = 30.0,
        ready_timeout_s: float = 300.0,
        strategy: ApplyStrategy | str = ApplyStrategy.AUTO,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.overlay_dir = Path(overlay_dir)
        self.registry = registry
        self.api_client = api_client
        self.analyze = analyze
        self.on_promote, self.on_reject, self.on_step = on_promote, on_reject, on_step
        self.step_interval_s, self.wait_s, self.poll_s = step_interval_s, wait_s, poll_s
        self.ready_timeout_s = ready_timeout_s
        self.strategy = strategy
        self.sleep = sleep
        self._kube: Kube | None = None
        self._applier: Applier | None = None
        self._renders: dict[str | None, list[dict[str, Any]]] = {}

    # the API ---------------------------------------------------------------------------

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube.of(self.api_client)
        return self._kube

    @property
    def applier(self) -> Applier:
        if self._applier is None:
            self._applier = Applier(self.kube, FIELD_MANAGER, self.strategy)
        return self._applier

    def _image(self, tag: str) -> str:
        try:
            return bento_image(self.registry, tag)
        except ValueError as exc:
            raise DeployError(str(exc)) from exc

    def _rendered(self, bento_tag: str | None) -> list[dict[str, Any]]:
        """The overlay with a Bento's image (None: as pinned); rendered once per call."""
        if bento_tag not in self._renders:
            image = None if bento_tag is None else self._image(bento_tag)
            self._renders[bento_tag] = render(self.overlay_dir, image)
        return copy.deepcopy(self._renders[bento_tag])

    def _namespace(self, objects: list[dict[str, Any]]) -> str:
        dep = find_model_deployment(objects)
        if dep is None:
            raise DeployError(
                f"overlay {self.overlay_dir} renders no Deployment {MODEL_SERVICE_DEPLOYMENT}"
            )
        return str(dep["metadata"].get("namespace") or "default")

    def _ref(self, kind: str, name: str, namespace: str, api_version: str) -> Any:
        return self.kube.ref(
            {
                "apiVersion": api_version,
                "kind": kind,
                "metadata": {"name": name, "namespace": namespace},
            }
        )

    def status(self) -> RolloutState | None:
        """The rollout the cluster records (None when there never was one)."""
        ns = self._namespace(self._rendered(None))
        live = self.kube.get(self._ref("ConfigMap", ROLLOUT_CONFIGMAP, ns, "v1"))
        return None if live is None else RolloutState.from_object(live)

    def _write_state(self, state: RolloutState) -> None:
        ref = self._ref("ConfigMap", ROLLOUT_CONFIGMAP, state.namespace, "v1")
        live = self.kube.get(ref)
        labels = ((live or {}).get("metadata") or {}).get("labels") or {}
        self.applier.apply([config_map(state, state.namespace, labels)])

    # start, resume, abort ------------------------------------------------------------------

    def plan(self, champion: str, challenger: str, strategy: str, steps: list[int]) -> str:
        """The YAML that :meth:`start` applies first (a dry run: no API calls)."""
        objects = self._rendered(champion)
        state = self._new_state(champion, challenger, strategy, steps, self._namespace(objects))
        return to_yaml(rollout_objects(objects, self._image(challenger), state))

    def _new_state(
        self, champion: str, challenger: str, strategy: str, steps: list[int], ns: str
    ) -> RolloutState:
        if strategy not in STRATEGIES:
            raise DeployError(f"--strategy {strategy!r}: choose shadow or canary")
        if champion == challenger:
            raise DeployError(f"the challenger {challenger} is the champion itself")
        if not steps or steps[-1] != 100 or sorted(set(steps)) != steps or steps[0] <= 0:
            raise DeployError(f"--steps {steps}: increasing percentages ending at 100")
        return RolloutState(strategy, list(steps), 0, champion, challenger, ns)

    def start(self, champion: str, challenger: str, strategy: str, steps: list[int]) -> Outcome:
        """Put the challenger beside the champion at the first step, then drive the rollout.

        A rollout already in progress for the same challenger is resumed; one for
        another challenger is an error (resume or abort it first).
        """
        objects = self._rendered(champion)
        ns = self._namespace(objects)
        state = self._new_state(champion, challenger, strategy, steps, ns)
        current = self.status()
        if current is not None and current.phase in ACTIVE:
            if current.challenger == challenger and current.champion == champion:
                return self.resume()
            raise DeployError(
                f"a {current.strategy} rollout of {current.challenger} is {current.phase} "
                f"(step {current.step + 1} of {len(current.steps)}): `crispops rollout resume` "
                "continues it, `crispops rollout abort` ends it"
            )
        champion_dep = find_model_deployment(objects)
        assert champion_dep is not None  # _namespace checked
        before = self.kube.get(self.kube.ref(champion_dep))
        if before is not None:
            revision = ((before.get("metadata") or {}).get("annotations") or {}).get(
                REVISION_ANNOTATION
            )
            state = replace(state, previous_revision=int(revision) if revision else None)
        wanted = rollout_objects(objects, self._image(challenger), state)
        dep = find_model_deployment(wanted)
        assert dep is not None
        record_revision(dep, before, self._image(champion), champion)
        self.applier.apply(wanted)
        self.on_step(state, None)
        for name in (CHALLENGER_NAME, MODEL_SERVICE_DEPLOYMENT):
            if not wait_for_rollout(self.kube, name, ns, self.ready_timeout_s, 1.0):
                why = Verdict(
                    "fail", [f"Deployment {name} was not ready within {self.ready_timeout_s:g}s"]
                )
                return self._roll_back(state, why, "rolled-back")
        return self._drive(state)

    def resume(self) -> Outcome:
        """Continue the rollout the cluster records, from its phase and step."""
        state = self.status()
        if state is None or state.phase not in ACTIVE:
            raise DeployError(
                "no rollout in progress to resume"
                + (f" (the last one was {state.phase})" if state else "")
            )
        if state.phase == "promoting":
            return self._promote(state, [])
        if state.phase == "rolling-back":
            return self._roll_back(
                state, Verdict("fail", [state.reason or "rolling back"]), "rolled-back"
            )
        return self._drive(state)

    def abort(self, reason: str = "aborted by the operator") -> Outcome:
        """End the rollout in progress: weight 0, the champion restored, the challenger removed."""
        state = self.status()
        if state is None or state.phase not in ACTIVE:
            raise DeployError("no rollout in progress to abort")
        return self._roll_back(state, Verdict("fail", [reason]), "aborted")

    # the loop ------------------------------------------------------------------------------

    def _drive(self, state: RolloutState) -> Outcome:
        verdicts: list[Verdict] = []
        while True:
            if self.step_interval_s:
                self.sleep(self.step_interval_s)
            deadline = time.monotonic() + self.wait_s
            while True:
                verdict = self.analyze(state)
                verdicts.append(verdict)
                if verdict.status != "wait":
                    break
                if time.monotonic() >= deadline:
                    # left as it is: the next `rollout resume` analyses again
                    return Outcome(replace(state, reason=verdict.summary()), verdicts)
                self.sleep(self.poll_s)
            if verdict.status == "fail":
                return self._roll_back(state, verdict, "rolled-back", verdicts)
            nxt = state.step + 1
            if nxt >= len(state.steps) - 1:  # the last step is 100%: promotion
                return self._promote(state, verdicts)
            state = replace(state, step=nxt, reason=verdict.summary())
            self._write_state(state)
            self.on_step(state, verdict)

    def _promote(self, state: RolloutState, verdicts: list[Verdict]) -> Outcome:
        """All traffic to the challenger, then its image on the champion Deployment, the
        challenger's objects removed, and the pointer and registry moved (``on_promote``)."""
        state = replace(state, phase="promoting", step=len(state.steps) - 1)
        self._write_state(state)
        objects = self._rendered(state.challenger)
        dep = find_model_deployment(objects)
        assert dep is not None
        ref = self.kube.ref(dep)
        before = self.kube.get(ref)
        image = self._image(state.challenger)
        if (
            before is None
            or _wired(before)
            or template_image((before.get("spec") or {}).get("template")) != image
        ):
            record_revision(dep, before, image, state.challenger)
            self.applier.apply(objects, exact_paths=[("spec", "template")])
        if not wait_for_rollout(
            self.kube, dep["metadata"]["name"], state.namespace, self.ready_timeout_s, 1.0
        ):
            raise DeployError(
                f"promoting {state.challenger}: {ref} did not roll out within "
                f"{self.ready_timeout_s:g}s; the rollout stays 'promoting' (weight 100 to the "
                "challenger): `crispops rollout resume` tries again"
            )
        self._remove_challenger(state.namespace)
        last = verdicts[-1] if verdicts else None
        self.on_promote(state, last)
        done = replace(state, phase="promoted", reason=last.summary() if last else state.reason)
        self._write_state(done)
        return Outcome(done, verdicts)

    def _roll_back(
        self,
        state: RolloutState,
        verdict: Verdict,
        phase: str,
        verdicts: list[Verdict] | None = None,
    ) -> Outcome:
        """Weight 0 first, then the champion Deployment as it was, the challenger removed."""
        state = replace(state, phase="rolling-back", reason=verdict.summary())
        self._write_state(state)
        objects = self._rendered(state.champion)
        dep = find_model_deployment(objects)
        assert dep is not None
        live = self.kube.get(self.kube.ref(dep))
        if _wired(live):
            annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
            if state.previous_revision is not None and annotations.get(
                PREVIOUS_TEMPLATE_ANNOTATION
            ):
                rollback(
                    self.overlay_dir,
                    self.api_client,
                    strategy=self.applier.decided or self.strategy,
                )
            else:  # there was no champion Deployment before: the plain champion
                self.applier.apply(objects, exact_paths=[("spec", "template")])
        # the champion's NetworkPolicy without the egress to the challenger
        policy = _by(objects, "NetworkPolicy", MODEL_SERVICE_DEPLOYMENT)
        if policy is not None:
            self.applier.apply([policy])
        self._remove_challenger(state.namespace)
        if phase == "rolled-back":
            self.on_reject(state, verdict)
        done = replace(state, phase=phase)
        self._write_state(done)
        return Outcome(done, [*(verdicts or []), verdict])

    def _remove_challenger(self, ns: str) -> None:
        for kind, api_version in (
            ("Deployment", "apps/v1"),
            ("Service", "v1"),
            ("NetworkPolicy", "networking.k8s.io/v1"),
        ):
            self.kube.delete(self._ref(kind, CHALLENGER_NAME, ns, api_version))
