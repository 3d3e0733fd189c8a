"""Request and response models, derived from the feature contract.

Nothing here lists a feature by hand: each request field comes from the
FeatureService (features) or its on-demand views' request sources.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model

from crispops.contract import FeatureContract, FieldSpec

_PY = {"float": float, "int": int, "string": str, "bool": bool}


INT64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


def _field(spec: FieldSpec, *, nullable: bool) -> tuple[Any, Any]:
    py: Any = _PY[spec.kind]
    if spec.kind == "int":
        # stores hold 64-bit integers; feature ints can arrive as floats after joins
        py = INT64 | float if nullable else INT64
    desc = spec.description or f"{spec.kind} from {spec.source}"
    if nullable:
        return (py | None, Field(..., description=f"{desc} (null when unknown)"))
    return (py, Field(..., description=desc))


#: The optional field a caller names its own request id with (each record, both endpoints).
REQUEST_ID = "request_id"
RequestId = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="The caller's id for this prediction (letters, digits, . _ : -); one is "
        "made when absent. Labels sent to /feedback name it.",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


def record_model(contract: FeatureContract) -> type[BaseModel]:
    """One /predict record: every feature (nullable) plus every request-time field."""
    fields: dict[str, Any] = {}
    for spec in contract.features:
        fields[spec.name] = _field(spec, nullable=True)
    for spec in contract.request_fields:
        fields.setdefault(spec.name, _field(spec, nullable=False))
    fields.setdefault(REQUEST_ID, (RequestId, None))
    model = create_model("FeatureRecord", __base__=_Strict, **fields)
    model.__doc__ = f"Feature values of {contract.feature_service}, plus request-time fields."
    return model


def entity_model(contract: FeatureContract) -> type[BaseModel]:
    """One /predict_entity record: every join key plus every request-time field."""
    fields: dict[str, Any] = {}
    for key in contract.entity_keys:
        spec = FieldSpec(key.name, key.kind, key.source, key.description or "Entity key to look up")
        fields[key.name] = _field(spec, nullable=False)
    for spec in contract.request_fields:
        fields.setdefault(spec.name, _field(spec, nullable=False))
    fields.setdefault(REQUEST_ID, (RequestId, None))
    model = create_model("EntityRecord", __base__=_Strict, **fields)
    model.__doc__ = f"An entity of {contract.feature_service} plus request-time fields."
    return model


class Prediction(BaseModel):
    """One record's answer."""

    prediction: float | int | str | None = Field(
        description="Predicted class (classification) or value (regression); null on error"
    )
    probabilities: dict[str, float] | None = Field(
        default=None, description="Probability per class (classification only)"
    )
    model_tag: str = Field(description="The BentoML model tag that answered")
    imputed: list[str] = Field(
        default_factory=list, description="Features that were missing and imputed"
    )
    error: str | None = Field(default=None, description="Why this record has no prediction")
    request_id: str | None = Field(
        default=None, description="This prediction's id in the prediction log (for /feedback)"
    )


class FeedbackIn(BaseModel):
    """One label returned for a logged prediction."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    request_id: str = Field(min_length=1, max_length=128, description="The prediction's id")
    label: int | float | bool | str | None = Field(
        description="The observed outcome: one of the model's classes, or a number (regression)",
    )
    observed_at: AwareDatetime | None = Field(
        default=None, description="When the outcome was observed (default: now)"
    )


class FeedbackError(BaseModel):
    record: int = Field(description="Index of the record in the request")
    request_id: str = Field(description="The record's request id")
    error: str = Field(description="Why the label was not stored")


class FeedbackAnswer(BaseModel):
    stored: int = Field(description="Labels stored (a repeat is stored again, unchanged)")
    errors: list[FeedbackError] = Field(
        default_factory=list, description="Records not stored, each with the reason"
    )


class Metadata(BaseModel):
    model_tag: str = Field(description="The BentoML model tag")
    bento_tag: str | None = Field(default=None, description="The Bento that carries it")
    task: str = Field(description="binary, multiclass or regression")
    metrics: dict[str, float] = Field(description="Holdout metrics of the model")
    feature_service: str = Field(description="The Feast FeatureService: the feature contract")
    features: list[str] = Field(description="Feature names, in contract order")
    request_fields: list[str] = Field(description="Request-time fields")
    model_inputs: list[str] = Field(description="Columns the model was trained on")
    training_window: dict[str, str] = Field(description="First and last label timestamp")
