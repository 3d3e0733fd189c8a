"""The model's feature contract, read from the Feast FeatureService.

Training, validation and serving all derive their column lists from this one
object; nothing else writes a feature list out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from crispops.errors import ContractError

if TYPE_CHECKING:
    from feast import FeatureStore

    from crispops.config import Settings

Kind = Literal["float", "int", "string", "bool"]


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind
    source: str  # feature view, on-demand view or request source that provides it
    description: str = ""


@dataclass(frozen=True)
class FeatureContract:
    feature_service: str
    entity: str
    features: tuple[FieldSpec, ...]
    request_fields: tuple[FieldSpec, ...] = field(default_factory=tuple)
    on_demand_views: tuple[str, ...] = field(default_factory=tuple)

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureContract:
        return cls(
            feature_service=data["feature_service"],
            entity=data["entity"],
            features=tuple(FieldSpec(**f) for f in data["features"]),
            request_fields=tuple(FieldSpec(**f) for f in data.get("request_fields", ())),
            on_demand_views=tuple(data.get("on_demand_views", ())),
        )

    @classmethod
    def from_json(cls, text: str) -> FeatureContract:
        return cls.from_dict(json.loads(text))


def _kind(dtype: Any) -> Kind:
    name = str(dtype).upper()
    if "BOOL" in name:
        return "bool"
    if "INT" in name:
        return "int"
    if "FLOAT" in name or "DOUBLE" in name:
        return "float"
    return "string"


def contract_from_store(store: FeatureStore, service_name: str, entity: str) -> FeatureContract:
    """Read the FeatureService ``service_name`` from the store's registry."""
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
    features: list[FieldSpec] = []
    requests: dict[str, FieldSpec] = {}
    for proj in service.feature_view_projections:
        for f in proj.features:
            features.append(FieldSpec(f.name, _kind(f.dtype), proj.name, f.description or ""))
        odfv = odfvs.get(proj.name)
        if odfv is not None:
            for src_name, src in odfv.source_request_sources.items():
                for f in src.schema:
                    spec = FieldSpec(f.name, _kind(f.dtype), src_name, f.description or "")
                    requests.setdefault(f.name, spec)
    names = [f.name for f in features]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ContractError(
            f"feature service {service_name!r}: feature names repeat across views: "
            f"{', '.join(dupes)} (use a projection prefix)"
        )
    used_odfvs = tuple(p.name for p in service.feature_view_projections if p.name in odfvs)
    return FeatureContract(
        service_name, entity, tuple(features), tuple(requests.values()), used_odfvs
    )


def feature_store(settings: Settings) -> FeatureStore:
    """The project's Feast store (quietly: Feast warns loudly about experimental APIs)."""
    import warnings

    from feast import FeatureStore

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FeatureStore(repo_path=str(settings.repo_path))


def load_contract(settings: Settings, store: FeatureStore | None = None) -> FeatureContract:
    store = store or feature_store(settings)
    return contract_from_store(store, settings.feature_store.feature_service, settings.data.entity)
