"""The lifecycle steps on files: what each KFP component calls, and what the plain
in-process baseline in ``bench/`` calls, so both do exactly the same work.

Every function takes the project's Settings and paths, writes its outputs
atomically and returns a small JSON-able summary.
"""

from __future__ import annotations

import atexit
import gc
import json
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crispops import __version__
from crispops.champion import Champion, read_champion, write_champion
from crispops.config import Settings
from crispops.contract import FeatureContract, feature_store, load_contract
from crispops.errors import DataValidationError, UserError
from crispops.io import file_sha256, read_json, write_frame, write_json, write_text

if TYPE_CHECKING:
    import pandas as pd

    from crispops.steps import evaluate as ev
    from crispops.steps import select_champion as sc
    from crispops.steps import validate as va

# Each pipeline task is a fresh process that runs one of these functions: step modules
# (scikit-learn, pandera, Feast) are imported inside the function that needs them, so
# a task pays only for its own imports.


def task_started(*, reads_feast: bool = False) -> None:
    """Called first by every component: its task is a fresh process that exits when the
    step is done. Freeze what is imported so far (kfp, crispops) out of the garbage
    collector's sweeps, and again at exit: the interpreter's final collections
    otherwise walk every object of scikit-learn, pandas and Feast, which took 0.3-1 s
    per task (bench/startup.py's "exit" column). Nothing is skipped: atexit handlers,
    finalizers and the flushing of logs still run.

    ``reads_feast`` (ingest, materialize): import Feast without its run-time type
    checks (:func:`_feast_without_type_checks`)."""
    gc.freeze()
    atexit.register(gc.freeze)
    if reads_feast and "feast" not in sys.modules:
        _feast_without_type_checks()


def _feast_without_type_checks() -> None:
    """Make typeguard's ``@typechecked`` a no-op before Feast is imported, as Python's
    ``-O`` does. Feast decorates 18 modules' classes with it, and typeguard re-reads,
    re-parses and recompiles their source on every import: two thirds of ``import
    feast`` (5.7 s -> 1.8 s of CPU, measured on a loaded 2-core machine). A task calls
    Feast from crispops' code only: the user's definitions are read from the registry,
    never imported, so nothing a user wrote loses a check (``crispops features apply``
    and every other command import Feast with its checks)."""
    import typeguard

    def typechecked(target: Any = None, **_options: Any) -> Any:
        return target if target is not None else (lambda t: t)

    typeguard.typechecked = typechecked


def _contract(settings: Settings, contract_file: Path | None = None) -> FeatureContract:
    """The contract ingest recorded (no Feast import), else read from the registry."""
    if contract_file is not None:
        return FeatureContract.from_dict(read_json(contract_file))
    return load_contract(settings)


def _rules(settings: Settings, champion_inputs: frozenset[str] | None = None) -> va.Rules:
    from crispops.steps import validate as va

    d = settings.data
    return va.Rules(
        entity_keys=tuple(d.join_keys),
        timestamp=d.timestamp,
        label=d.label,
        task=d.task,
        min_rows=d.min_rows,
        policy=settings.validation.policy(),
        champion_inputs=champion_inputs,
    )


# materialization (its own pipeline): plan, read each chunk, write in order -------------
def _end(end: str) -> datetime | None:
    if not end:
        return None
    try:
        moment = datetime.fromisoformat(end)
    except ValueError:
        raise UserError(f"end {end!r}: not an ISO 8601 time such as 2026-05-01T00:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def plan_chunks_task(
    settings: Settings, config_file: str | None = None, end: str = ""
) -> list[dict[str, Any]]:
    from crispops.steps import chunks

    planned = chunks.plan(
        settings.repo_path,
        settings.state_path,
        settings.feature_store.chunk,
        end=_end(end),
        config_file=config_file,
    )
    return [c.item() for c in planned]


def read_chunk_task(
    settings: Settings, chunk: dict[str, Any], out: Path, config_file: str | None = None
) -> dict[str, Any]:
    from crispops.steps import chunks

    result = chunks.read(
        settings.repo_path, settings.state_path, chunks.Chunk.from_item(chunk), out, config_file
    )
    return {**result.chunk.item(), "rows": result.rows, "reused": result.reused}


def write_chunks_task(
    settings: Settings, read: list[tuple[dict[str, Any], Path]], config_file: str | None = None
) -> dict[str, Any]:
    """``read``: each chunk's metadata (as read_chunk_task returned it) and rows file."""
    from crispops.steps import chunks

    result = chunks.write(
        settings.repo_path,
        settings.state_path,
        [(chunks.Chunk.from_item(meta), path) for meta, path in read],
        config_file,
    )
    for meta, _ in read:
        view = result.views.get(str(meta.get("view", "")))
        if view is not None:
            view["reused"] = view.get("reused", 0) + int(bool(meta.get("reused")))
    return result.to_dict()


# ingest ------------------------------------------------------------------------------
def ingest_task(settings: Settings, out: Path, contract_out: Path | None = None) -> dict[str, Any]:
    from crispops.steps.ingest import ingest

    store = feature_store(settings)
    contract = load_contract(settings, store)
    if contract_out is not None:
        write_json(contract_out, contract.to_dict())
    policy = settings.validation.policy()
    df, result = ingest(
        store,
        contract,
        settings.label_source_path,
        settings.data.timestamp,
        settings.data.label,
        max_unmatched=policy.threshold("unmatched"),
        enforce=policy.severity("unmatched") == "error",
        max_dropped=policy.threshold("dropped_rows"),
        enforce_dropped=policy.severity("dropped_rows") == "error",
    )
    write_frame(out, df)
    return {
        "rows": result.rows,
        "columns": len(result.columns),
        "start": str(result.start),
        "end": str(result.end),
        "label_rows": result.label_rows,
        "returned": result.returned,
        "coverage": [asdict(c) for c in result.coverage],
        "unmatched": result.unmatched,
        "contract": contract.to_dict(),
    }


# validate ----------------------------------------------------------------------------
def reference_profile(
    settings: Settings,
) -> tuple[dict[str, Any] | None, frozenset[str] | None]:
    """The current champion's data profile (the reference for drift) and its inputs."""
    champ = read_champion(settings.champion_file)
    if champ is None:
        return None, None
    path = Path(champ.model_file).with_name("profile.json")
    profile = read_json(path) if path.is_file() else None
    inputs = champ.inputs or list((profile or {}).get("features", {}))
    return profile, frozenset(inputs)


def validate_task(
    settings: Settings,
    data: Path,
    report_md: Path,
    profile_out: Path,
    contract_file: Path | None = None,
    findings_out: Path | None = None,
    ingest_summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Raise DataValidationError (the run stops) when an error-level rule fails.

    ``findings_out`` gets the report as JSON, with the features left out of training
    (``dropped``) and ingest's row accounting; select-features reads it.
    """
    import pandas as pd

    from crispops.steps import validate as va

    df = pd.read_parquet(data)
    contract = _contract(settings, contract_file)
    reference, champion_inputs = reference_profile(settings)
    rules = _rules(settings, champion_inputs)
    report = va.validate(df, contract, rules, reference=reference)
    text = report.markdown()
    if ingest_summary:
        text += _accounting_markdown(ingest_summary)
    write_text(report_md, text)
    findings = {**report.to_dict(), "ingest": _accounting(ingest_summary)}
    if findings_out is not None:
        write_json(findings_out, findings)
    if not report.ok:
        raise DataValidationError(report)
    write_json(profile_out, va.profile(df, contract, rules))
    return findings


def _accounting(summary: dict[str, Any] | None) -> dict[str, Any]:
    keys = ("label_rows", "returned", "coverage", "unmatched")
    return {k: summary[k] for k in keys if k in summary} if summary else {}


def _accounting_markdown(summary: dict[str, Any]) -> str:
    rows = int(summary.get("label_rows", 0))  # KFP's metadata hands numbers back as floats
    lines = [
        "",
        "## Rows at ingest",
        "",
        f"Label rows: {rows:,}; returned by the offline store: {int(summary.get('returned', 0)):,}",
        "",
        "| feature view | TTL (days) | rows without any value | share |",
        "|---|---|---|---|",
    ]
    for c in summary.get("coverage", []):
        ttl = "none" if c["ttl_days"] is None else f"{c['ttl_days']:g}"
        empty = int(c["rows_without_values"])
        lines.append(f"| {c['view']} | {ttl} | {empty:,} | {c['share']:.1%} |")
    return "\n".join(lines) + "\n"


# explore -----------------------------------------------------------------------------
def explore_task(
    settings: Settings, data: Path, html: Path, markdown: Path, contract_file: Path | None = None
) -> dict[str, Any]:
    import pandas as pd

    from crispops.steps.explore import explore

    df = pd.read_parquet(data)
    d = settings.data
    result = explore(
        df,
        entity=d.entity,
        timestamp=d.timestamp,
        label=d.label,
        task=d.task,
        features=_contract(settings, contract_file).input_names,
        html_path=html,
        markdown_path=markdown,
        title=f"{settings.feature_store.feature_service}: exploratory data analysis",
    )
    return {"rows": result.n_rows, "features": result.n_features, "plots": result.plots}


# split -------------------------------------------------------------------------------
def split_task(settings: Settings, data: Path, train_out: Path, test_out: Path) -> dict[str, Any]:
    import pandas as pd

    from crispops.steps.split import split

    t = settings.training
    tr, te, result = split(
        pd.read_parquet(data),
        timestamp=settings.data.timestamp,
        label=settings.data.label,
        task=settings.data.task,
        strategy=t.split,
        test_fraction=t.test_fraction,
        seed=t.seed,
    )
    write_frame(train_out, tr)
    write_frame(test_out, te)
    return asdict(result)


# select-features -----------------------------------------------------------------------
def select_features_task(
    settings: Settings,
    train_data: Path,
    out: Path,
    contract_file: Path | None = None,
    findings: Path | None = None,
) -> dict[str, Any]:
    """Rank the contract's inputs, less those validate left out of training."""
    import pandas as pd

    from crispops.steps.select_features import select_features

    left_out = read_json(findings).get("dropped", []) if findings is not None else []
    sel = select_features(
        pd.read_parquet(train_data),
        _contract(settings, contract_file),
        label=settings.data.label,
        task=settings.data.task,
        threshold=settings.training.feature_threshold,
        seed=settings.training.seed,
        exclude=left_out,
    )
    data = {**asdict(sel), "left_out": left_out}
    write_json(out, data)
    return data


# train ---------------------------------------------------------------------------------
def candidate_items(settings: Settings) -> list[dict[str, str]]:
    """Candidates as ParallelFor items: every value a string, so KFP types them alike."""
    return [
        {"name": c.name, "estimator": c.estimator, "search": json.dumps(c.search, sort_keys=True)}
        for c in settings.training.candidates
    ]


def train_task(
    settings: Settings,
    train_data: Path,
    selection: Path,
    candidate: dict[str, str],
    out: Path,
    contract_file: Path | None = None,
) -> dict[str, Any]:
    import joblib
    import pandas as pd

    from crispops.steps.train import train

    sel = read_json(selection)
    kinds = _contract(settings, contract_file).kinds()
    kept = sel["kept"]
    numeric = [c for c in kept if kinds.get(c) != "string"]
    categorical = [c for c in kept if kinds.get(c) == "string"]
    t = settings.training
    model, result = train(
        pd.read_parquet(train_data),
        name=candidate["name"],
        estimator=candidate["estimator"],
        search=json.loads(candidate.get("search") or "{}"),
        numeric=numeric,
        categorical=categorical,
        label=settings.data.label,
        task=settings.data.task,
        metric=t.selection_metric,
        cv_folds=t.cv_folds,
        seed=t.seed,
        max_onehot_categories=t.max_onehot_categories,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out)
    return {**asdict(result), "numeric": numeric, "categorical": categorical}


# evaluate ------------------------------------------------------------------------------
def evaluate_task(
    settings: Settings, model_file: Path, test_data: Path, candidate: str, out: Path
) -> ev.Evaluation:
    import joblib
    import pandas as pd

    from crispops.steps import evaluate as ev

    result = ev.evaluate(
        joblib.load(model_file),
        pd.read_parquet(test_data),
        label=settings.data.label,
        task=settings.data.task,
        name=candidate,
    )
    write_json(out, result.to_dict())
    return result


# select-champion -------------------------------------------------------------------------
def leaderboard(
    evaluations: list[dict[str, Any]],
    metric: str,
    higher: bool,
    baseline: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Candidates best first, ranked 1..n; the baseline row (``baseline`` True, rank
    None) sits where its score puts it, after any candidate it ties."""
    import pandas as pd

    rows = [{"candidate": e["candidate"], "baseline": False, **e["metrics"]} for e in evaluations]
    if baseline is not None:
        rows.append({"candidate": baseline["candidate"], "baseline": True, **baseline["metrics"]})
    df = pd.DataFrame(rows).sort_values(
        [metric, "baseline"], ascending=[not higher, True], ignore_index=True
    )
    ranks: list[int | None] = []
    n = 0
    for is_baseline in df["baseline"]:
        n += not is_baseline
        ranks.append(None if is_baseline else n)
    df.insert(0, "rank", pd.Series(ranks, dtype="object"))
    return df


def leaderboard_markdown(board: pd.DataFrame) -> str:
    """The board as Markdown: the baseline row marked, never ranked."""
    shown = board.copy()
    shown["rank"] = [
        "–" if b else str(r) for r, b in zip(shown["rank"], shown["baseline"], strict=True)
    ]
    shown["candidate"] = [
        f"_{c}_" if b else c for c, b in zip(shown["candidate"], shown["baseline"], strict=True)
    ]
    return str(shown.drop(columns="baseline").to_markdown(index=False, floatfmt=".4f"))


def select_champion_task(
    settings: Settings,
    evaluations: list[Path],
    models: dict[str, tuple[Path, dict[str, Any]]],
    train_data: Path,
    test_data: Path,
    leaderboard_md: Path,
    decision_out: Path,
    champion_model_out: Path,
) -> sc.Decision:
    """The best candidate through the gate: the trivial baseline (fitted on the training
    split, scored on the same holdout by the same code), training.min_score, then the
    current champion."""
    import joblib
    import pandas as pd

    from crispops.steps import evaluate as ev
    from crispops.steps import select_champion as sc
    from crispops.steps.train import train_baseline

    metric = settings.training.selection_metric
    higher = settings.higher_is_better
    label, task = settings.data.label, settings.data.task
    evals = [read_json(p) for p in evaluations]
    scores = {e["candidate"]: float(e["metrics"][metric]) for e in evals}
    best = sc.best_candidate(scores, higher)
    test_df = pd.read_parquet(test_data)
    train_info = models[best][1]
    baseline_model = train_baseline(
        pd.read_parquet(train_data),
        numeric=list(train_info["numeric"]),
        categorical=list(train_info["categorical"]),
        label=label,
        task=task,
    )
    baseline = ev.evaluate(
        baseline_model, test_df, label=label, task=task, name=sc.baseline_name(task)
    ).to_dict()
    board = leaderboard(evals, metric, higher, baseline)
    champ = read_champion(settings.champion_file)
    champ_score: float | None = None
    note = ""
    if champ is not None:
        try:
            current = joblib.load(champ.model_file)
            champ_score = float(ev.score(current, test_df, label, task)[metric])
        except (OSError, KeyError, ValueError) as exc:
            note = f" (the current champion could not score this holdout: {exc})"
    t = settings.training
    decision = sc.gate(
        challenger=best,
        challenger_score=scores[best],
        champion_score=champ_score,
        champion_tag=champ.model_tag if champ else None,
        metric=metric,
        higher_is_better=higher,
        margin=t.promotion_margin,
        baseline_score=float(baseline["metrics"][metric]),
        baseline_margin=t.baseline_margin,
        min_score=t.min_score,
    )
    if note:
        decision = sc.Decision(**{**decision.to_dict(), "reason": decision.reason + note})
    dummy = "DummyRegressor (mean)" if task == "regression" else "DummyClassifier (prior)"
    write_text(
        leaderboard_md,
        f"# Leaderboard ({metric}, {'higher' if higher else 'lower'} is better)\n\n"
        f"{leaderboard_markdown(board)}\n\n"
        f"_{baseline['candidate']}_ is the trivial baseline, a {dummy} fitted on the "
        "training split: never a candidate, it is the bar each candidate must clear by "
        f"training.baseline_margin ({t.baseline_margin:g}).\n\n"
        f"**Decision ({decision.verdict}):** {decision.reason}\n",
    )
    winner = next(e for e in evals if e["candidate"] == best)
    write_json(
        decision_out,
        {
            **decision.to_dict(),
            "leaderboard": board.to_dict("records"),
            "evaluation": winner,
            "train_info": train_info,
            "holdout_scores": holdout_scores(models[best][0], test_df, task),
        },
    )
    champion_model_out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(models[best][0], champion_model_out)
    return decision


def holdout_scores(model_file: Path, test_df: pd.DataFrame, task: str) -> dict[str, Any]:
    """The model's score distribution on the holdout: the monitor's reference for
    prediction drift (the score is what the prediction log records per answer)."""
    import joblib

    from crispops.monitoring.drift import model_scores, score_profile
    from crispops.steps.evaluate import model_columns
    from crispops.steps.train import to_frame

    model = joblib.load(model_file)
    numeric, categorical = model_columns(model)
    return score_profile(model_scores(model, to_frame(test_df, numeric, categorical), task))


# package ---------------------------------------------------------------------------------
def code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"crispops {__version__}" + (f" ({sha})" if sha else "")


def model_digest(path: Path) -> str:
    """The content digest of a fitted model's file: what identifies a packaged model."""
    return f"sha256:{file_sha256(path)}"


def _champion_entry(champ: Champion, **extra: Any) -> Any:
    """A registry entry (``registry.ModelEntry``) for a champion pointer the registry
    does not hold (written before the registry), with ``extra`` fields."""
    from crispops import registry

    return registry.ModelEntry(
        model_tag=champ.model_tag,
        bento_tag=champ.bento_tag,
        status=registry.Status.CHAMPION.value,
        metric=champ.metric,
        score=champ.score,
        run_id=champ.run_id,
        **extra,
    )


def packaged_model(settings: Settings, digest: str) -> Any:
    """The champion's or a challenger's registry entry (``registry.ModelEntry``) whose
    model has this digest, else None. The champion comes first; an entry registered
    before digests were recorded is hashed from its model file in the store. A champion
    pointer the registry does not know (written before the registry) is matched too."""
    from crispops import registry

    live = (registry.Status.CHAMPION.value, registry.Status.CHALLENGER.value)
    entries = [e for e in registry.read_models(settings.models_file) if e.status in live]
    entries.sort(key=lambda e: e.status != registry.Status.CHAMPION.value)
    for e in entries:
        if not e.record:  # nothing to serve the pointer from
            continue
        known = e.model_digest
        if not known:
            path = Path(str(e.record.get("model_file", "")))
            known = model_digest(path) if path.is_file() else ""
        if known == digest:
            return e
    champ = read_champion(settings.champion_file)
    if champ is not None and not any(e.model_tag == champ.model_tag and e.record for e in entries):
        path = Path(champ.model_file)
        if path.is_file() and model_digest(path) == digest:
            return _champion_entry(champ, record=champ.to_dict())
    return None


def package_task(
    settings: Settings,
    *,
    model_file: Path,
    decision_file: Path,
    profile_file: Path,
    run_id: str,
    contract_file: Path | None = None,
) -> Champion:
    """Save the run's best model in BentoML's store and build its Bento; register it.

    A promoted model moves the champion pointer (the last write) and retires the
    previous champion in the registry. A model the gate kept out (it beat the
    trivial baseline but not the champion: verdict ``kept_champion``) is packaged
    as a ``challenger`` with the gate's verdict and reason, for a shadow or canary
    rollout; the pointer does not move. The returned record describes the packaged
    model either way.

    A model already packaged (the same model digest as the champion's or a
    challenger's, as when a rerun changed nothing the model depends on) is not
    packaged twice: its Bento is reused and the record returned is the one its own
    run wrote (so its ``run_id`` is not this run's); a reused challenger the gate now
    promotes becomes the champion (:func:`promote_task`)."""
    from crispops import registry
    from crispops.serving import packaging
    from crispops.steps.select_champion import NOT_WORTH_SERVING

    packaging.bentoml_home(settings.bentoml_home)
    decision = read_json(decision_file)
    if decision.get("verdict") in NOT_WORTH_SERVING:
        raise UserError(
            f"{decision_file}: verdict {decision.get('verdict')}: nothing worth packaging "
            f"({decision.get('reason', '')})"
        )
    promote = bool(decision.get("promote"))
    digest = model_digest(model_file)
    same = packaged_model(settings, digest)
    if same is not None:  # this very model is packaged already: reuse its Bento
        if promote and same.status != registry.Status.CHAMPION.value:
            return promote_task(
                settings, same.bento_tag, f"promoted again by run {run_id}: {decision['reason']}"
            )
        if same.status == registry.Status.CHAMPION.value:
            return read_champion(settings.champion_file) or Champion(**same.record)
        return Champion(**same.record)
    stage = registry.Status.CHAMPION if promote else registry.Status.CHALLENGER
    evaluation = decision["evaluation"]
    train_info = decision["train_info"]
    profile = read_json(profile_file)
    contract = _contract(settings, contract_file)
    name = packaging.model_name(settings.feature_store.feature_service)
    metadata = {
        "task": settings.data.task,
        "metric": decision["metric"],
        "metrics": evaluation["metrics"],
        "candidate": decision["challenger"],
        "feature_service": contract.feature_service,
        "contract": contract.to_dict(),
        "numeric": train_info["numeric"],
        "categorical": train_info["categorical"],
        "categorical_encoding": train_info.get("categorical_encoding", {}),
        "best_params": json.dumps(train_info.get("best_params", {}), default=str),
        "training_window": {"start": profile["start"], "end": profile["end"]},
        "rows": profile["rows"],
        "holdout_scores": decision.get("holdout_scores") or {},
        "code_version": code_version(),
        "python": platform.python_version(),
        "run_id": run_id,
    }
    labels = {
        "stage": stage.value,
        "task": settings.data.task,
        "feature_service": contract.feature_service,
        "candidate": decision["challenger"],
    }
    model_tag = packaging.save_model(
        name,
        model_file,
        labels=labels,
        metadata=metadata,
        extra_files={"profile.json": profile_file, "decision.json": decision_file},
    )
    bento_tag = packaging.build_bento(
        model_tag, name=name, labels=labels, work_dir=settings.state_path / "build"
    )
    champion = Champion(
        model_tag=model_tag,
        bento_tag=bento_tag,
        model_file=str(packaging.model_path(model_tag)),
        candidate=decision["challenger"],
        metric=decision["metric"],
        score=float(decision["challenger_score"]),
        metrics={k: float(v) for k, v in evaluation["metrics"].items()},
        promoted_at=datetime.now(UTC).isoformat(timespec="seconds"),
        run_id=run_id,
        inputs=list(train_info["numeric"]) + list(train_info["categorical"]),
        training_window={"start": str(profile["start"]), "end": str(profile["end"])},
        baseline_score=(
            None if decision.get("baseline_score") is None else float(decision["baseline_score"])
        ),
    )
    entry = registry.ModelEntry(
        model_tag=model_tag,
        bento_tag=bento_tag,
        model_digest=digest,
        status=stage.value,
        metric=champion.metric,
        score=champion.score,
        run_id=run_id,
        candidate=champion.candidate,
        created_at=champion.promoted_at,
        verdict=str(decision.get("verdict", "")),
        reason=str(decision.get("reason", "")),
        record=champion.to_dict(),
    )
    if not promote:
        registry.register(settings.models_file, entry)
        return champion
    previous = read_champion(settings.champion_file)
    known = {e.model_tag for e in registry.read_models(settings.models_file)}
    if previous is not None and previous.model_tag not in known:  # from before the registry
        registry.register(
            settings.models_file,
            _champion_entry(
                previous,
                candidate=previous.candidate,
                created_at=previous.promoted_at,
                verdict="promoted",
            ),
        )
    registry.register(settings.models_file, entry)  # retires the previous champion
    write_champion(settings.champion_file, champion)  # the last step: atomic
    return champion


def packaged_note(packaged: Champion, run_id: str) -> str:
    """What the package step did, in a line: built a Bento, or reused one."""
    if packaged.run_id == run_id:
        return f"packaged {packaged.model_tag} in Bento {packaged.bento_tag}"
    return (
        f"reused Bento {packaged.bento_tag}: the same model ({packaged.model_tag}) was "
        f"packaged by run {packaged.run_id or '?'}, nothing built"
    )


# promote / reject (a live rollout's outcome) --------------------------------------------------
def promote_task(settings: Settings, bento_tag: str, reason: str) -> Champion:
    """Make a packaged challenger the champion: the registry (retiring the previous
    champion), then the pointer, from the record its package step kept."""
    from crispops import registry

    entry = registry.find(settings.models_file, bento_tag)
    if not entry.record:
        raise UserError(
            f"{settings.models_file}: {entry.model_tag} has no packaged record to become the "
            "champion pointer (package it again with `crispops run`)"
        )
    try:
        champion = Champion(
            **{**entry.record, "promoted_at": datetime.now(UTC).isoformat(timespec="seconds")}
        )
    except TypeError as exc:
        raise UserError(f"{settings.models_file}: {entry.model_tag}: bad record ({exc})") from None
    registry.set_status(settings.models_file, entry.model_tag, registry.Status.CHAMPION, reason)
    write_champion(settings.champion_file, champion)  # the last step: atomic
    return champion


def reject_task(settings: Settings, bento_tag: str, reason: str) -> None:
    """Mark a challenger rejected (its live analysis failed); the pointer does not move."""
    from crispops import registry

    registry.set_status(settings.models_file, bento_tag, registry.Status.REJECTED, reason)
