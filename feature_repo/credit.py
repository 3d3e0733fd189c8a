"""Feature definitions for the credit-default demo.

Ordered as Feast's templates do: entity, data sources, feature views,
on-demand feature views, feature services.
"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource
from feast.data_source import DataSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
OWNER = "risk-ml@crispops.dev"
#: `crispops demo --engine spark` runs these definitions with Feast's Spark offline store
#: (its feature_store.yaml says so): the same Parquet files, read by Spark.
SPARK = (yaml.safe_load((HERE / "feature_store.yaml").read_text()) or {}).get(
    "offline_store", {}
).get("type") == "spark"


def parquet_source(**fields: Any) -> DataSource:
    """A Parquet file source: a FileSource, or on Spark a SparkSource of the same file."""
    if SPARK:
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
            SparkSource,
        )

        return SparkSource(file_format="parquet", **fields)
    return FileSource(**fields)


# Entity -----------------------------------------------------------------------------
customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.INT64,
    description="A retail lending customer",
    owner=OWNER,
    tags={"domain": "credit"},
)

# Data sources -----------------------------------------------------------------------
customer_profile_source = parquet_source(
    name="customer_profile_source",
    path=str(DATA / "customer_profiles.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Monthly customer profile snapshots",
    owner=OWNER,
)

account_activity_source = parquet_source(
    name="account_activity_source",
    path=str(DATA / "account_activity.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Daily account activity aggregates",
    owner=OWNER,
)

application_request = RequestSource(
    name="application_request",
    schema=[
        Field(name="requested_amount", dtype=Float64, description="Amount applied for"),
        Field(name="term_months", dtype=Int64, description="Loan term in months"),
    ],
    description="Values known only when the application arrives",
    owner=OWNER,
)

# Feature views ----------------------------------------------------------------------
customer_profile_fv = FeatureView(
    name="customer_profile_fv",
    entities=[customer],
    ttl=timedelta(days=45),
    schema=[
        Field(name="annual_income", dtype=Float64, description="Declared yearly income"),
        Field(name="credit_score", dtype=Int64, description="Bureau score, 300-850"),
        Field(name="employment_years", dtype=Float64, description="Years with employer"),
        Field(name="home_ownership", dtype=String, description="RENT, MORTGAGE or OWN"),
        Field(name="age", dtype=Int64, description="Age in years"),
        Field(name="open_credit_lines", dtype=Int64, description="Open credit lines"),
    ],
    online=True,
    source=customer_profile_source,
    description="Customer profile as of each monthly snapshot",
    owner=OWNER,
    tags={"domain": "credit", "cadence": "monthly"},
)

account_activity_fv = FeatureView(
    name="account_activity_fv",
    entities=[customer],
    ttl=timedelta(days=7),
    schema=[
        Field(name="avg_balance", dtype=Float64, description="Average balance that day"),
        Field(name="credit_utilization", dtype=Float64, description="Balance over limit"),
        Field(name="num_transactions", dtype=Int64, description="Transactions that day"),
        Field(name="late_payments_90d", dtype=Int64, description="Late payments, 90 days"),
    ],
    online=True,
    source=account_activity_source,
    description="Daily account activity aggregates",
    owner=OWNER,
    tags={"domain": "credit", "cadence": "daily"},
)


# On-demand feature views -------------------------------------------------------------
@on_demand_feature_view(
    sources=[customer_profile_fv, application_request],
    schema=[
        # Feast 0.67 compares the declared schema with the inferred one, descriptions
        # included, so these two fields are documented in the function's docstring.
        Field(name="loan_to_income", dtype=Float64),
        Field(name="monthly_payment_to_income", dtype=Float64),
    ],
    # python mode: a few microseconds per online request where pandas mode costs ~1.7 ms
    mode="python",
    description="Affordability ratios computed at request time",
    owner=OWNER,
    tags={"domain": "credit"},
)
def application_ratios_odfv(inputs: dict[str, Any]) -> dict[str, Any]:
    """loan_to_income: requested amount over annual income;
    monthly_payment_to_income: the yearly cost of the instalments over annual income.
    Inputs are lists (one value per row); an unknown or non-positive income gives None."""
    loan_to_income, payment_to_income = [], []
    for amount, income, term in zip(
        inputs["requested_amount"], inputs["annual_income"], inputs["term_months"], strict=True
    ):
        ok = income is not None and income == income and income > 0 and amount is not None
        loan_to_income.append(float(amount) / income if ok else None)
        months = max(int(term), 1) if term is not None and term == term else None
        payment_to_income.append(
            float(amount) / months * 12 / income if ok and months is not None else None
        )
    return {"loan_to_income": loan_to_income, "monthly_payment_to_income": payment_to_income}


# Feature services -------------------------------------------------------------------
credit_default_v1 = FeatureService(
    name="credit_default_v1",
    features=[customer_profile_fv, account_activity_fv, application_ratios_odfv],
    description="The credit-default model's feature contract",
    owner=OWNER,
    tags={"model": "credit_default", "version": "1"},
)
