"""The model's feature contract, read from the Feast FeatureService.

Training, validation and serving all derive their column lists from this one
object; nothing else writes a feature list out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from crispops.config import Kind
from crispops.errors import ContractError

if TYPE_CHECKING:
    from feast import FeatureStore

    from crispops.config import Settings


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind
    source: str  # feature view, on-demand view or request source that provides it
    description: str = ""


@dataclass(frozen=True)
class FeatureContract:
    """What a model consumes and how it is looked up.

    ``entity_keys``: every join key of the FeatureService's views (a lookup needs all
    of them); ``features``: the service's features, in order; ``request_fields``: what
    arrives with a request: the on-demand views' request-source fields and the label
    table's own request-time features; ``view_keys``: each view's join keys.
    """

    feature_service: str
    entity_keys: tuple[FieldSpec, ...]
    features: tuple[FieldSpec, ...]
    request_fields: tuple[FieldSpec, ...] = field(default_factory=tuple)
    on_demand_views: tuple[str, ...] = field(default_factory=tuple)
    view_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    view_ttls: dict[str, float] = field(default_factory=dict)  # view -> TTL seconds (0: none)

    @property
    def join_keys(self) -> list[str]:
        return [k.name for k in self.entity_keys]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def request_names(self) -> list[str]:
        return [f.name for f in self.request_fields]

    @property
    def inputs(self) -> tuple[FieldSpec, ...]:
        """What a model consumes: the service's features plus the request-time fields."""
        seen = {f.name for f in self.features}
        return self.features + tuple(f for f in self.request_fields if f.name not in seen)

    @property
    def stored_feature_names(self) -> list[str]:
        """Features read from materialized feature views (not computed on demand)."""
        return [f.name for f in self.features if f.source not in self.on_demand_views]

    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    def kinds(self) -> dict[str, Kind]:
        return {f.name: f.kind for f in self.inputs}

    def view_features(self, view: str) -> list[str]:
        return [f.name for f in self.features if f.source == view]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureContract:
        if "entity_keys" in data:
            keys = tuple(FieldSpec(**k) for k in data["entity_keys"])
        else:  # written before many entities: one key, its kind stored beside the contract
            keys = (FieldSpec(data["entity"], data.get("entity_kind", "int"), "entity"),)
        return cls(
            feature_service=data["feature_service"],
            entity_keys=keys,
            features=tuple(FieldSpec(**f) for f in data["features"]),
            request_fields=tuple(FieldSpec(**f) for f in data.get("request_fields", ())),
            on_demand_views=tuple(data.get("on_demand_views", ())),
            view_keys={v: tuple(k) for v, k in data.get("view_keys", {}).items()},
            view_ttls={v: float(s) for v, s in data.get("view_ttls", {}).items()},
        )

    @classmethod
    def from_json(cls, text: str) -> FeatureContract:
        return cls.from_dict(json.loads(text))


#: The source name of a request-time feature that comes from the label table.
LABEL_TABLE = "label table"


def _kind(dtype: Any) -> Kind:
    name = str(dtype).upper()
    if "BOOL" in name:
        return "bool"
    if "INT" in name:
        return "int"
    if "FLOAT" in name or "DOUBLE" in name:
        return "float"
    return "string"


def contract_from_store(
    store: FeatureStore,
    service_name: str,
    request_features: dict[str, Kind] | None = None,
) -> FeatureContract:
    """Read the FeatureService ``service_name`` from the store's registry.

    ``request_features`` are label-table columns the model also takes at request time
    (``data.request_features``); the on-demand views' request fields come with them.
    """
    from feast.errors import FeatureServiceNotFoundException

    try:
        service = store.get_feature_service(service_name)
    except FeatureServiceNotFoundException:
        known = [s.name for s in store.list_feature_services()]
        raise ContractError(
            f"feature_store.feature_service: {service_name!r} is not in the registry "
            f"(known: {', '.join(known) or 'none'}); run `crispops features apply`"
        ) from None
    odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
    views = {v.name: v for v in store.list_feature_views()}
    features: list[FieldSpec] = []
    requests: dict[str, FieldSpec] = {}
    keys: dict[str, FieldSpec] = {}
    view_keys: dict[str, tuple[str, ...]] = {}
    view_ttls: dict[str, float] = {}
    for proj in service.feature_view_projections:
        for f in proj.features:
            features.append(FieldSpec(f.name, _kind(f.dtype), proj.name, f.description or ""))
        odfv = odfvs.get(proj.name)
        if odfv is not None:
            for src_name, src in odfv.source_request_sources.items():
                for f in src.schema:
                    spec = FieldSpec(f.name, _kind(f.dtype), src_name, f.description or "")
                    requests.setdefault(f.name, spec)
            continue
        fv = views.get(proj.name)
        if fv is None:
            continue
        view_keys[fv.name] = _join_keys(store, fv, keys)
        view_ttls[fv.name] = fv.ttl.total_seconds() if fv.ttl else 0.0
    for name, kind in (request_features or {}).items():
        requests.setdefault(name, FieldSpec(name, kind, LABEL_TABLE))
    names = [f.name for f in features]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ContractError(
            f"feature service {service_name!r}: feature names repeat across views: "
            f"{', '.join(dupes)} (use a projection prefix)"
        )
    clash = sorted(set(names) & {n for n, f in requests.items() if f.source == LABEL_TABLE})
    if clash:
        raise ContractError(
            f"data.request_features: {', '.join(clash)} is also a feature of "
            f"{service_name!r}; a column cannot be both (remove it from request_features)"
        )
    used_odfvs = tuple(p.name for p in service.feature_view_projections if p.name in odfvs)
    return FeatureContract(
        feature_service=service_name,
        entity_keys=tuple(keys.values()),
        features=tuple(features),
        request_fields=tuple(requests.values()),
        on_demand_views=used_odfvs,
        view_keys=view_keys,
        view_ttls=view_ttls,
    )


def _join_keys(store: FeatureStore, fv: Any, keys: dict[str, FieldSpec]) -> tuple[str, ...]:
    """A view's join keys, each recorded once in ``keys`` with its kind."""
    columns = {c.name: c for c in getattr(fv, "entity_columns", [])}
    out = []
    for entity_name in fv.entities:
        entity = store.get_entity(entity_name)
        for key in [entity.join_key]:
            if key not in keys:
                col = columns.get(key)
                kind = _kind(col.dtype) if col is not None else _value_kind(entity.value_type)
                keys[key] = FieldSpec(key, kind, entity.name, entity.description or "")
            out.append(key)
    return tuple(out)


def _value_kind(value_type: Any) -> Kind:
    return _kind(getattr(value_type, "name", value_type))


def feature_store(settings: Settings) -> FeatureStore:
    """The project's Feast store (quietly: Feast warns loudly about experimental APIs)."""
    import warnings

    from feast import FeatureStore

    from crispops.feast_registry import atomic_registry_writes
    from crispops.spark import use_this_python

    use_this_python()
    atomic_registry_writes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FeatureStore(repo_path=str(settings.repo_path))


def load_contract(settings: Settings, store: FeatureStore | None = None) -> FeatureContract:
    """The contract of the project's FeatureService, checked against its settings."""
    store = store or feature_store(settings)
    contract = contract_from_store(
        store, settings.feature_store.feature_service, settings.data.request_features
    )
    declared, actual = settings.data.join_keys, contract.join_keys
    if set(declared) != set(actual):
        views = "; ".join(f"{v}: {', '.join(k)}" for v, k in contract.view_keys.items())
        raise ContractError(
            f"data.entity lists {', '.join(declared)} but the views of "
            f"{contract.feature_service!r} join on {', '.join(actual)} ({views}); "
            "set data.entity to every join key"
        )
    return contract
