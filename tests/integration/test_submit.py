"""`crispops.submit` against Kubeflow Pipelines' REST API.

The KFP API here is a local fake (tests/kfp_fake.py) that answers the v2beta1
endpoints kfp.Client uses and records every request; no cluster runs here. The
tests check what the client sent: the uploaded IR, the run and recurring-run
bodies (field names as the real API spells them), the token, and the errors.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crispops.config import Settings, load_settings
from crispops.lifecycle import candidate_items
from crispops.orchestration.compile import pipeline_arguments
from crispops.orchestration.submit import SubmitError, kfp_cron, submit
from support.projects import copy_demo_project
from tests.kfp_fake import FakeKFP

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user kfp context file, no KF_PIPELINES_* or token from the outside."""
    import kfp

    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for name in (
        "KF_PIPELINES_ENDPOINT",
        "KF_PIPELINES_UI_ENDPOINT",
        "KF_PIPELINES_IAP_OAUTH2_CLIENT_ID",
        "KF_PIPELINES_APP_OAUTH2_CLIENT_ID",
        "KF_PIPELINES_APP_OAUTH2_CLIENT_SECRET",
        "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
        "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME",
        "KFP_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return load_settings(copy_demo_project(tmp_path / "project"))


@pytest.fixture()
def fake() -> Iterator[FakeKFP]:
    with FakeKFP() as server:
        yield server


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uploaded_ir(fake: FakeKFP, path: str) -> dict[str, Any]:
    req = fake.one("POST", path)
    assert req.filenames["uploadfile"].endswith(".yaml")
    return dict(yaml.safe_load(req.files["uploadfile"]))


# One-off runs -----------------------------------------------------------------------


def test_one_off_run_uploads_the_ir_and_runs_its_version(
    fake: FakeKFP, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    result = submit(settings, host=fake.url)

    assert fake.routes() == [
        ("GET", "/apis/v2beta1/healthz"),  # crispops' timed check
        ("GET", "/apis/v2beta1/healthz"),  # kfp.Client() at construction
        ("GET", "/apis/v2beta1/pipelines"),  # get_pipeline_id: display_name filter
        ("POST", "/apis/v2beta1/pipelines/upload"),
        ("GET", f"/apis/v2beta1/pipelines/{result.pipeline_id}/versions"),
        ("GET", "/apis/v2beta1/experiments"),  # create_experiment: get first
        ("POST", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/runs"),
    ]

    # The uploaded file is the compiled IR.
    ir = uploaded_ir(fake, "/pipelines/upload")
    assert ir["pipelineInfo"]["name"] == "crispops-training"
    assert {"ingest", "validate", "split", "select-features", "select-champion"} <= set(
        ir["root"]["dag"]["tasks"]
    )
    upload = fake.one("POST", "/pipelines/upload")
    assert upload.param("name") == "crispops-training"
    lookup = json.loads(fake.one("GET", "/pipelines").param("filter") or "{}")
    assert lookup["predicates"][0]["key"] == "display_name"
    assert lookup["predicates"][0]["stringValue"] == "crispops-training"

    # The experiment, created by name.
    assert fake.one("POST", "/experiments").json["display_name"] == "crispops"
    (experiment,) = fake.experiments.values()

    # The run: the uploaded version, the experiment, the pipeline arguments.
    (version,) = fake.versions[result.pipeline_id]
    body = fake.one("POST", "/runs").json
    assert body["experiment_id"] == experiment["experiment_id"] == result.experiment_id
    assert body["pipeline_version_reference"] == {
        "pipeline_id": result.pipeline_id,
        "pipeline_version_id": version["pipeline_version_id"],
    }
    assert "pipeline_spec" not in body
    params = body["runtime_config"]["parameters"]
    # Each step's slice of the settings, never the whole settings object.
    assert "config" not in params
    assert json.loads(params["split_settings"])["training"]["seed"] == settings.training.seed
    assert params["candidates"] == candidate_items(settings)
    assert params == pipeline_arguments(settings, "training")
    assert body["display_name"].startswith("crispops-training ")

    (run_id,) = fake.runs
    assert result.run_id == run_id
    assert result.recurring_run_id is None
    assert result.pipeline_version_id == version["pipeline_version_id"]
    assert result.new_pipeline is True
    assert result.url == f"{fake.url}/#/runs/details/{run_id}"
    assert capsys.readouterr().out == ""  # kfp's printed links do not leak out


def test_run_name_and_experiment_are_used(fake: FakeKFP, settings: Settings) -> None:
    submit(settings, host=fake.url + "/", experiment="nightly", run_name="by hand")
    assert fake.one("POST", "/experiments").json["display_name"] == "nightly"
    assert fake.one("POST", "/runs").json["display_name"] == "by hand"


def test_resubmit_uploads_a_new_version(fake: FakeKFP, settings: Settings) -> None:
    first = submit(settings, host=fake.url)
    second = submit(settings, host=fake.url)

    assert len(fake.find("POST", "/pipelines/upload")) == 1
    again = fake.one("POST", "/pipelines/upload_version")
    assert again.param("pipelineid") == first.pipeline_id
    assert again.param("name") == second.pipeline_version_name
    assert (again.param("description") or "").startswith("sha256:")
    assert uploaded_ir(fake, "/pipelines/upload_version")["pipelineInfo"]["name"] == (
        "crispops-training"
    )

    assert second.pipeline_id == first.pipeline_id
    assert second.new_pipeline is False
    assert second.pipeline_version_id != first.pipeline_version_id
    assert [v["pipeline_version_id"] for v in fake.versions[first.pipeline_id]] == [
        first.pipeline_version_id,
        second.pipeline_version_id,
    ]
    # The experiment is found, not created twice; the second run uses the new version.
    assert len(fake.find("POST", "/experiments")) == 1
    assert second.experiment_id == first.experiment_id
    runs = [r.json for r in fake.find("POST", "/runs")]
    assert runs[1]["pipeline_version_reference"]["pipeline_version_id"] == (
        second.pipeline_version_id
    )


# Recurring runs ---------------------------------------------------------------------


def test_schedule_creates_a_recurring_run(fake: FakeKFP, settings: Settings) -> None:
    result = submit(settings, host=fake.url, schedule="0 3 * * *")

    assert not fake.find("POST", "/runs")
    body = fake.one("POST", "/recurringruns").json
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert body["max_concurrency"] in ("1", 1)
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["experiment_id"] == result.experiment_id
    assert body["pipeline_version_reference"] == {
        "pipeline_id": result.pipeline_id,
        "pipeline_version_id": result.pipeline_version_id,
    }
    assert body["runtime_config"]["parameters"] == pipeline_arguments(settings, "training")

    (recurring_id,) = fake.recurring_runs
    assert result.recurring_run_id == recurring_id
    assert result.run_id is None
    assert result.cron == "0 0 3 * * *"
    assert result.url == f"{fake.url}/#/recurringrun/details/{recurring_id}"


def test_same_schedule_twice_replaces_the_recurring_run(fake: FakeKFP, settings: Settings) -> None:
    first = submit(settings, host=fake.url, schedule="0 3 * * *")
    second = submit(settings, host=fake.url, schedule="0 3 * * *")

    assert len(fake.find("POST", "/recurringruns")) == 2
    (left,) = fake.recurring_runs.values()  # one schedule runs, not two
    assert left["recurring_run_id"] == second.recurring_run_id != first.recurring_run_id
    assert second.replaced_recurring_run_ids == (first.recurring_run_id,)
    assert left["pipeline_version_reference"]["pipeline_version_id"] == (second.pipeline_version_id)
    assert fake.one("DELETE", f"/recurringruns/{first.recurring_run_id}")


def test_another_schedule_or_name_keeps_both(fake: FakeKFP, settings: Settings) -> None:
    submit(settings, host=fake.url, schedule="0 3 * * *")
    submit(settings, host=fake.url, schedule="0 4 * * *")
    named = submit(settings, host=fake.url, schedule="0 3 * * *", run_name="nightly")
    assert len(fake.recurring_runs) == 3
    assert named.replaced_recurring_run_ids == ()
    assert not fake.find("DELETE", "/recurringruns")


def test_failed_replacement_keeps_the_old_schedule(fake: FakeKFP, settings: Settings) -> None:
    first = submit(settings, host=fake.url, schedule="0 3 * * *")
    fake.fail("POST", "/recurringruns", 500, "InternalServerError: database is locked")
    with pytest.raises(SubmitError, match="recurring run"):
        submit(settings, host=fake.url, schedule="0 3 * * *")
    assert list(fake.recurring_runs) == [first.recurring_run_id]


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("0 3 * * *", "0 0 3 * * *"),
        ("*/15 8-18 * * MON-FRI", "0 */15 8-18 * * MON-FRI"),
        ("30 2 1,15 jan,jul 0", "0 30 2 1,15 jan,jul 0"),
        ("0 0 9 ? * 2-6", "0 0 9 ? * 2-6"),  # already KFP's six fields
        ("  0   3 * * * ", "0 0 3 * * *"),
        ("@daily", "@daily"),
        ("@every 1h30m", "@every 1h30m"),
    ],
)
def test_cron_is_converted_to_kfp_six_fields(given: str, sent: str) -> None:
    assert kfp_cron(given) == sent


@pytest.mark.parametrize(
    "cron",
    [
        "",
        "0 3 * *",
        "* * * * * * *",
        "61 * * * *",
        "0 24 * * *",
        "0 0 0 * *",
        "0 3 * * 7",
        "a b c d e",
        "5-1 * * * *",
        "*/0 * * * *",
        "0 3 ? * *".replace("?", "x"),
        "@sometimes",
    ],
)
def test_malformed_cron_is_refused_before_any_request(
    fake: FakeKFP, settings: Settings, cron: str
) -> None:
    with pytest.raises(ValueError, match="schedule") as info:
        submit(settings, host=fake.url, schedule=cron)
    assert repr(cron) in str(info.value)
    assert fake.requests == []


def test_bad_arguments_are_refused_before_any_request(fake: FakeKFP, settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown pipeline 'nope'"):
        submit(settings, host=fake.url, pipeline="nope")
    with pytest.raises(ValueError, match="http:// or https://"):
        submit(settings, host=fake.url.removeprefix("http://"))
    assert fake.requests == []


# Token ------------------------------------------------------------------------------


def test_token_from_the_env_var_is_sent_as_bearer(
    fake: FakeKFP, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KFP_TOKEN", "s3cret\n")
    fake.require_token("s3cret")
    result = submit(settings, host=fake.url)
    assert result.run_id
    assert fake.requests
    assert {r.headers.get("authorization") for r in fake.requests} == {"Bearer s3cret"}


def test_token_env_var_name_comes_from_settings(
    fake: FakeKFP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_demo_project(tmp_path / "other")
    s = load_settings(project, cluster={"kfp_token_env": "TEAM_KFP_TOKEN"})
    monkeypatch.setenv("TEAM_KFP_TOKEN", "team-token")
    fake.require_token("team-token")
    submit(s, host=fake.url, schedule="@hourly")
    assert {r.headers.get("authorization") for r in fake.requests} == {"Bearer team-token"}


def test_explicit_token_wins(
    fake: FakeKFP, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KFP_TOKEN", "from-env")
    fake.require_token("given")
    submit(settings, host=fake.url, token="given")
    assert {r.headers.get("authorization") for r in fake.requests} == {"Bearer given"}


def test_no_token_sends_no_authorization(fake: FakeKFP, settings: Settings) -> None:
    submit(settings, host=fake.url)
    assert all("authorization" not in r.headers for r in fake.requests)


# Errors -----------------------------------------------------------------------------


def test_closed_port_cannot_be_reached(settings: Settings) -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(SubmitError) as info:
        submit(settings, host=host)
    message = str(info.value)
    assert message.startswith(f"cannot reach Kubeflow Pipelines at {host}: ")
    assert "refused" in message.lower()
    assert "\n" not in message
    assert "object at 0x" not in message


def test_unknown_host_cannot_be_reached(settings: Settings) -> None:
    with pytest.raises(
        SubmitError, match=r"cannot reach Kubeflow Pipelines at http://kfp\.invalid"
    ):
        submit(settings, host="http://kfp.invalid:8888")


def test_silent_host_times_out(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import crispops.orchestration.submit

    monkeypatch.setattr(crispops.orchestration.submit, "READ_TIMEOUT_S", 0.3)
    with socket.socket() as listener:  # accepts connections (backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        host = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(SubmitError) as info:
            submit(settings, host=host)
    message = str(info.value)
    assert message.startswith(f"cannot reach Kubeflow Pipelines at {host}: ")
    assert "timed out" in message


def test_login_page_is_not_mistaken_for_the_api(settings: Settings) -> None:
    with FakeKFP(login_page=True) as fake:
        with pytest.raises(SubmitError) as info:
            submit(settings, host=fake.url)
        assert fake.routes() == [("GET", "/apis/v2beta1/healthz"), ("GET", "/login")]
        assert "is not the Kubeflow Pipelines API" in str(info.value)
        assert "$KFP_TOKEN" in str(info.value)

        fake.require_token("t")
        assert submit(settings, host=fake.url, token="t").run_id


def test_rejected_run_names_the_request_and_the_server_message(
    fake: FakeKFP, settings: Settings
) -> None:
    fake.fail(
        "POST",
        "/runs",
        400,
        "Failed to create a new run: Invalid input error: Unrecognized input parameter: x",
    )
    with pytest.raises(SubmitError) as info:
        submit(settings, host=fake.url, run_name="r1")
    message = str(info.value)
    assert message.startswith("KFP rejected the run 'r1': 400 Bad Request: ")
    assert "Unrecognized input parameter: x" in message
    assert "\n" not in message
    assert "KFP_TOKEN" not in message


def test_rejected_recurring_run(fake: FakeKFP, settings: Settings) -> None:
    fake.fail("POST", "/recurringruns", 500, "InternalServerError: database is locked")
    with pytest.raises(SubmitError, match=r"KFP rejected the recurring run .*: 500 .*locked"):
        submit(settings, host=fake.url, schedule="0 3 * * *")


def test_rejected_upload(fake: FakeKFP, settings: Settings) -> None:
    fake.fail("POST", "/pipelines/upload", 400, "Invalid input error: bad spec")
    with pytest.raises(SubmitError, match=r"KFP rejected the upload of pipeline .*bad spec$"):
        submit(settings, host=fake.url)
    assert not fake.find("POST", "/runs")


def test_unauthorized_mentions_the_token_env_var(fake: FakeKFP, settings: Settings) -> None:
    fake.require_token("right")
    started = time.monotonic()
    with pytest.raises(SubmitError) as info:
        submit(settings, host=fake.url)
    # Fails at the first request: kfp.Client's health check would retry for 20 s.
    assert time.monotonic() - started < 10
    assert len(fake.requests) == 1
    message = str(info.value)
    assert message.startswith("KFP rejected the health check: 401 Unauthorized")
    assert "$KFP_TOKEN" in message
    assert "no token was sent" in message


def test_wrong_token_mentions_the_token_env_var(fake: FakeKFP, settings: Settings) -> None:
    fake.require_token("right")
    with pytest.raises(SubmitError, match=r"401 .*check the token in \$KFP_TOKEN"):
        submit(settings, host=fake.url, token="wrong")


def test_forbidden_later_mentions_the_token_env_var(fake: FakeKFP, settings: Settings) -> None:
    fake.fail("POST", "/experiments", 403, "RBAC: access denied")
    with pytest.raises(SubmitError) as info:
        submit(settings, host=fake.url, token="t")
    message = str(info.value)
    assert message.startswith("KFP rejected the experiment 'crispops': 403 Forbidden: ")
    assert "RBAC: access denied" in message
    assert "$KFP_TOKEN" in message


def test_multi_user_needs_a_namespace(settings: Settings) -> None:
    with FakeKFP(multi_user=True) as fake:
        with pytest.raises(SubmitError, match="multi-user"):
            submit(settings, host=fake.url)
        assert not fake.find("POST", "/pipelines/upload")

        submit(settings, host=fake.url, namespace="team-a")
        assert fake.one("POST", "/experiments").json["namespace"] == "team-a"
