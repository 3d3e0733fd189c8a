"""The CRISP-DM training pipeline: ingest, validate, explore, split, select features,
train and evaluate each candidate in parallel, select the champion, package it."""

from kfp import dsl

from components.evaluate import evaluate
from components.explore import explore
from components.ingest import ingest
from components.package import package
from components.select_champion import select_champion
from components.select_features import select_features
from components.split import split
from components.train import train
from components.validate import validate
from crispops.steps import Step


@dsl.pipeline(name="crispops-training", description="Train, evaluate and package a champion.")
def training_pipeline(config: str, candidates: list, run_id: str = "manual"):
    ingested = ingest(config=config).set_display_name(Step.INGEST)
    dataset, contract = ingested.outputs["dataset"], ingested.outputs["contract"]
    checked = validate(config=config, dataset=dataset, contract=contract)
    checked.set_display_name(Step.VALIDATE)
    explored = explore(config=config, dataset=dataset, contract=contract).after(checked)
    explored.set_display_name(Step.EXPLORE)
    parts = split(config=config, dataset=dataset).after(checked).set_display_name(Step.SPLIT)
    selected = select_features(
        config=config,
        train=parts.outputs["train"],
        contract=contract,
        findings=checked.outputs["findings"],
    )
    selected.set_display_name(Step.SELECT_FEATURES)

    with dsl.ParallelFor(candidates, parallelism=2) as candidate:
        trained = train(
            config=config,
            candidate=candidate,
            train=parts.outputs["train"],
            selection=selected.outputs["selection"],
            contract=contract,
        ).set_display_name(Step.TRAIN)
        evaluated = evaluate(
            config=config, model=trained.outputs["model"], test=parts.outputs["test"]
        ).set_display_name(Step.EVALUATE)

    chosen = select_champion(
        config=config,
        models=dsl.Collected(trained.outputs["model"]),
        evaluations=dsl.Collected(evaluated.outputs["evaluation"]),
        train=parts.outputs["train"],
        test=parts.outputs["test"],
    ).set_display_name(Step.SELECT_CHAMPION)

    # A single return value: kfp.local resolves conditions on it, not on NamedTuple fields.
    # True: worth serving (packaged as champion when promoted, else as a challenger).
    with dsl.If(chosen.outputs["Output"] == True):  # noqa: E712
        package(
            config=config,
            run_id=run_id,
            champion=chosen.outputs["champion"],
            decision=chosen.outputs["decision"],
            profile=checked.outputs["profile"],
            contract=contract,
        ).set_display_name(Step.PACKAGE)
