"""The baseline for the pipeline benchmark: the same work as the training pipeline,
in one plain Python process, step after step (same joins, same candidates, same search).

Usage: python -m bench.plain_script PROJECT_DIR OUT_JSON
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path


def main(project: Path, out: Path) -> None:
    started = time.perf_counter()
    times: dict[str, float] = {}

    def timed(name: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        value = fn(*args, **kwargs)
        times[name] = times.get(name, 0.0) + time.perf_counter() - t
        return value

    from crispops import lifecycle as L
    from crispops.config import load_settings
    from crispops.steps import Step

    times["imports"] = time.perf_counter() - started
    s = load_settings(project)
    work = Path(tempfile.mkdtemp(prefix="plain-", dir=s.state_path.parent))
    data, contract = work / "data.parquet", work / "contract.json"
    ingested = timed(Step.INGEST, L.ingest_task, s, data, contract)
    findings = work / "findings.json"
    timed(
        Step.VALIDATE,
        L.validate_task,
        s,
        data,
        work / "report.md",
        work / "profile.json",
        contract,
        findings_out=findings,
        ingest_summary=ingested,
    )
    timed(Step.EXPLORE, L.explore_task, s, data, work / "eda.html", work / "eda.md", contract)
    timed(Step.SPLIT, L.split_task, s, data, work / "train.parquet", work / "test.parquet")
    timed(
        Step.SELECT_FEATURES,
        L.select_features_task,
        s,
        work / "train.parquet",
        work / "selection.json",
        contract,
        findings,
    )
    models = {}
    evaluations = []
    for cand in L.candidate_items(s):
        name = cand["name"]
        info = timed(
            Step.TRAIN,
            L.train_task,
            s,
            work / "train.parquet",
            work / "selection.json",
            cand,
            work / f"{name}.joblib",
            contract,
        )
        models[name] = (work / f"{name}.joblib", info)
        timed(
            Step.EVALUATE,
            L.evaluate_task,
            s,
            work / f"{name}.joblib",
            work / "test.parquet",
            name,
            work / f"{name}.eval.json",
        )
        evaluations.append(work / f"{name}.eval.json")
    decision = timed(
        Step.SELECT_CHAMPION,
        L.select_champion_task,
        s,
        evaluations,
        models,
        work / "train.parquet",
        work / "test.parquet",
        work / "leaderboard.md",
        work / "decision.json",
        work / "champion.joblib",
    )
    if decision.promote:
        timed(
            Step.PACKAGE,
            L.package_task,
            s,
            model_file=work / "champion.joblib",
            decision_file=work / "decision.json",
            profile_file=work / "profile.json",
            run_id="plain",
            contract_file=contract,
        )
    times["total"] = time.perf_counter() - started
    out.write_text(json.dumps({"steps": times, "champion": decision.challenger}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
