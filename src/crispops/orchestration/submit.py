"""Submit a compiled pipeline to a Kubeflow Pipelines cluster.

``submit`` compiles the pipeline, uploads it (a new version when a pipeline of that
name exists), gets or creates the experiment, then starts one run or creates a
recurring run. Everything that can go wrong on the way surfaces as one
``SubmitError`` line (or a ``ValueError`` for bad arguments, raised before any
request), never a traceback.

kfp.Client has no request timeout and, at construction, retries a failing health
check five times five seconds apart; so a short, timed health check runs first.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import re
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from crispops.config import Settings, env
from crispops.errors import SubmitError, UserError

#: Seconds allowed to connect, and to wait for an answer, in the health check.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0

#: kfp.Client reads this for the UI's address (else the API host); so do we.
UI_ENDPOINT_ENV = "KF_PIPELINES_UI_ENDPOINT"


@dataclass(frozen=True)
class SubmitResult:
    host: str
    pipeline_name: str
    pipeline_id: str
    pipeline_version_id: str
    pipeline_version_name: str
    new_pipeline: bool
    experiment_id: str
    run_id: str | None = None
    recurring_run_id: str | None = None
    cron: str | None = None
    #: Recurring runs of the same name and pipeline that this one replaced.
    replaced_recurring_run_ids: tuple[str, ...] = ()
    url: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Cron -------------------------------------------------------------------------------

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, 1)}
_DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
#: (field, lowest, highest, names) in KFP's order: seconds come first.
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_EVERY = re.compile(r"^@every\s+(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


def _cron_value(token: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names.get(token.upper()) if names else None
    if value is None:
        if not token.isdigit():
            raise ValueError(f"{token!r} is not a number")
        value = int(token)
    if not low <= value <= high:
        raise ValueError(f"{token} is outside {low}-{high}")
    return value


def _check_cron_field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> None:
    for item in text.split(","):
        base, slash, step = item.partition("/")
        if slash and not (step.isdigit() and int(step) >= 1):
            raise ValueError(f"{field} {item!r}: the step must be a whole number of at least 1")
        if base in ("*", "?"):
            if base == "?" and field not in ("day of month", "day of week"):
                raise ValueError(f"{field} {item!r}: '?' only fits day of month or day of week")
            continue
        first, dash, last = base.partition("-")
        try:
            start = _cron_value(first, low, high, names)
            end = _cron_value(last, low, high, names) if dash else start
        except ValueError as exc:
            hint = " (Sunday is 0 or SUN)" if field == "day of week" else ""
            raise ValueError(f"{field} {item!r}: {exc}{hint}") from None
        if end < start:
            raise ValueError(f"{field} {item!r}: the range runs backwards")


def kfp_cron(expression: str) -> str:
    """KFP's 6-field cron (seconds first) for a 5-field standard or a 6-field expression.

    Raises ValueError naming the expression when it is malformed. Standard 5-field cron
    is read as minute hour day-of-month month day-of-week and gets "0 " (second 0) in
    front: KFP would read "0 3 * * *" as second 0, minute 3 of every hour.
    """
    text = " ".join(expression.split())
    if text in _DESCRIPTORS or _EVERY.match(text):
        return text
    fields = text.split(" ") if text else []
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise UserError(
            f"schedule {expression!r}: expected 5 cron fields (minute hour day-of-month "
            f"month day-of-week) or KFP's 6 (second first), got {len(fields)}"
        )
    for value, (field, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        try:
            _check_cron_field(value, field, low, high, names)
        except ValueError as exc:
            raise UserError(f"schedule {expression!r}: {exc}") from None
    return " ".join(fields)


# Errors -----------------------------------------------------------------------------


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _server_message(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return _one_line(str(body), 200)
    if isinstance(data, dict):
        for key in ("message", "error", "error_message"):
            if data.get(key):
                return _one_line(str(data[key]))
    return _one_line(str(body), 200)


def _unreachable_reason(exc: BaseException) -> str:
    import urllib3

    reason: BaseException | None = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        reason = exc.reason
    text = str(reason) or type(reason).__name__
    # urllib3 prefixes "<urllib3.connection.HTTPConnection object at 0x...>: " or
    # "HTTPConnection(host='...', port=...): "; the message names the host already.
    text = re.sub(r"^(<[^>]*>|\w+\(host=[^)]*\)):\s*", "", text)
    return _one_line(text, 200)


def _rejected(what: str, status: int, reason: str, body: Any, token_env: str, token: bool) -> str:
    message = _server_message(body)
    text = f"KFP rejected {what}: {status} {reason or ''}".rstrip()
    if message:
        text += f": {message}"
    if status in (401, 403):
        if token:
            text += f" (check the token in ${token_env}: it may be expired or lack access)"
        else:
            text += f" (no token was sent: put a bearer token in ${token_env})"
    return text


@contextlib.contextmanager
def _calling(what: str, host: str, token_env: str, token: bool) -> Iterator[None]:
    """Turn what kfp and urllib3 raise into one SubmitError line."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except SubmitError:
        raise
    except kfp_server_api.ApiException as exc:
        if not exc.status:  # TLS failures and the like: no HTTP answer at all
            reason = _unreachable_reason(Exception(exc.reason or "no answer"))
            raise SubmitError(f"cannot reach Kubeflow Pipelines at {host}: {reason}") from exc
        raise SubmitError(
            _rejected(what, exc.status, exc.reason, exc.body, token_env, token)
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise SubmitError(
            f"cannot reach Kubeflow Pipelines at {host}: {_unreachable_reason(exc)}"
        ) from exc
    except ValueError as exc:  # kfp's own checks, e.g. two pipelines with one name
        raise SubmitError(f"{what} failed: {_one_line(str(exc))}") from exc


# Submission -------------------------------------------------------------------------


def _check_host(host: str) -> str:
    url = host.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise UserError(
            f"host {host!r}: give the Kubeflow Pipelines API as a URL starting with "
            "http:// or https://"
        )
    return url


def _health_check(host: str, token: str | None, token_env: str) -> bool:
    """One timed GET /apis/v2beta1/healthz; True when KFP runs in multi-user mode."""
    import kfp_server_api

    config = kfp_server_api.Configuration(host=host)
    if token:
        config.api_key["authorization"] = token
        config.api_key_prefix["authorization"] = "Bearer"
    with (
        _calling("the health check", host, token_env, bool(token)),
        kfp_server_api.ApiClient(config) as api_client,
    ):
        api = kfp_server_api.HealthzServiceApi(api_client)
        # Raw (not deserialized), so that a login page is told apart from the API.
        response = api.healthz_service_get_healthz(
            _preload_content=False, _request_timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
        )
        body = response.data
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        kind = response.headers.get("Content-Type", "unknown content")
        raise SubmitError(
            f"{host} is not the Kubeflow Pipelines API: GET /apis/v2beta1/healthz answered "
            f"{kind}, not JSON (a login page? put a bearer token in ${token_env})"
        )
    return bool(data.get("multi_user"))


def _pipeline_doc(path: Path) -> dict[str, Any]:
    doc = next(iter(yaml.safe_load_all(path.read_text())), None)
    if not isinstance(doc, dict) or not doc.get("pipelineInfo", {}).get("name"):
        raise SubmitError(f"{path}: compiled pipeline has no pipelineInfo.name")
    return doc


def _ui_url(host: str, run_id: str | None, recurring_run_id: str | None) -> str:
    ui = (env(UI_ENDPOINT_ENV) or host).rstrip("/")
    if not ui.startswith(("http://", "https://")):
        ui = "http://" + ui
    if recurring_run_id:
        return f"{ui}/#/recurringrun/details/{recurring_run_id}"
    return f"{ui}/#/runs/details/{run_id}"


def submit(
    settings: Settings,
    *,
    host: str,
    pipeline: str = "training",
    experiment: str = "crispops",
    schedule: str | None = None,
    run_name: str | None = None,
    token: str | None = None,
    namespace: str | None = None,
) -> SubmitResult:
    """Compile ``pipeline``, upload it, and run it once or on ``schedule`` (cron).

    ``token`` defaults to the environment variable named by ``cluster.kfp_token_env``.
    ``namespace`` is the Kubeflow profile to submit into on a multi-user deployment.
    Raises ValueError for bad arguments (before any request) and SubmitError when
    compiling or the cluster fails.
    """
    from crispops.orchestration.compile import PIPELINES, compile_pipeline, pipeline_arguments

    url = _check_host(host)
    if pipeline not in PIPELINES:
        raise UserError(f"unknown pipeline {pipeline!r}; known: {', '.join(PIPELINES)}")
    if not experiment.strip():
        raise UserError("experiment name is empty")
    cron = kfp_cron(schedule) if schedule is not None else None

    token_env = settings.cluster.kfp_token_env
    if token is None:
        token = env(token_env)
    token = (token or "").strip() or None

    if pipeline == "monitoring" and not settings.cluster.kfp_host:
        # A monitoring run that decides to retrain submits the training pipeline to the
        # KFP it runs in, not a local run inside its pod.
        cluster = settings.cluster.model_copy(update={"kfp_host": url})
        settings = settings.model_copy(update={"cluster": cluster})
    arguments = pipeline_arguments(settings, pipeline)
    with tempfile.TemporaryDirectory(prefix="crispops-submit-") as tmp:
        try:
            package = compile_pipeline(settings, pipeline, Path(tmp))
        except Exception as exc:
            raise SubmitError(
                f"cannot compile pipeline {pipeline!r}: {_one_line(str(exc))}"
            ) from exc
        doc = _pipeline_doc(package)
        info = doc["pipelineInfo"]
        digest = hashlib.sha256(package.read_bytes()).hexdigest()

        multi_user = _health_check(url, token, token_env)
        # kfp prints links to stdout and warns at construction; the CLI reports instead.
        with contextlib.redirect_stdout(io.StringIO()):
            return _submit_package(
                url,
                token,
                token_env,
                package=package,
                pipeline_name=str(info["name"]),
                description=str(info.get("description") or ""),
                digest=digest,
                image=settings.task_image,
                experiment=experiment,
                cron=cron,
                run_name=run_name,
                arguments=arguments,
                namespace=namespace,
                multi_user=multi_user,
            )


def _submit_package(
    host: str,
    token: str | None,
    token_env: str,
    *,
    package: Path,
    pipeline_name: str,
    description: str,
    digest: str,
    image: str,
    experiment: str,
    cron: str | None,
    run_name: str | None,
    arguments: dict[str, Any],
    namespace: str | None,
    multi_user: bool,
) -> SubmitResult:
    import kfp

    def calling(what: str) -> contextlib.AbstractContextManager[None]:
        return _calling(what, host, token_env, bool(token))

    with calling("the health check"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        extra = {"namespace": namespace} if namespace else {}
        client = kfp.Client(host=host, existing_token=token, **extra)
    if multi_user and not client.get_user_namespace():
        raise SubmitError(
            f"Kubeflow Pipelines at {host} is multi-user: give the namespace (Kubeflow "
            "profile) to submit into"
        )

    now = dt.datetime.now(dt.UTC)
    version_name = f"{pipeline_name}-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    version_description = f"sha256:{digest} image:{image}"

    with calling(f"the pipeline lookup for {pipeline_name!r}"):
        pipeline_id = client.get_pipeline_id(pipeline_name)
    new_pipeline = pipeline_id is None
    if pipeline_id is None:
        with calling(f"the upload of pipeline {pipeline_name!r}"):
            uploaded = client.upload_pipeline(
                str(package), pipeline_name=pipeline_name, description=description or None
            )
        pipeline_id = uploaded.pipeline_id
        with calling(f"the version lookup for pipeline {pipeline_name!r}"):
            listed = client.list_pipeline_versions(
                pipeline_id, page_size=1, sort_by="created_at desc"
            )
        versions = listed.pipeline_versions or []
        if not versions:
            raise SubmitError(
                f"KFP created pipeline {pipeline_name!r} ({pipeline_id}) but lists no version"
            )
        version_id = versions[0].pipeline_version_id
        version_name = versions[0].display_name or pipeline_name
    else:
        with calling(f"the upload of a new version of pipeline {pipeline_name!r}"):
            version = client.upload_pipeline_version(
                str(package),
                pipeline_version_name=version_name,
                pipeline_id=pipeline_id,
                description=version_description,
            )
        version_id = version.pipeline_version_id
    if not pipeline_id or not version_id:
        raise SubmitError(f"KFP answered the upload of {pipeline_name!r} without ids")

    with calling(f"the experiment {experiment!r}"):
        experiment_id = client.create_experiment(name=experiment).experiment_id

    stamp = f"{now:%Y-%m-%d %H:%M:%S}"
    if cron is None:
        name = run_name or f"{pipeline_name} {stamp}"
        with calling(f"the run {name!r}"):
            run = client.run_pipeline(
                experiment_id=experiment_id,
                job_name=name,
                params=arguments,
                pipeline_id=pipeline_id,
                version_id=version_id,
            )
        run_id, recurring_run_id = run.run_id, None
    else:
        name = run_name or f"{pipeline_name} every {cron}"
        with calling(f"the lookup of recurring run {name!r}"):
            previous = _recurring_runs_named(client, experiment_id, name, pipeline_id)
        with calling(f"the recurring run {name!r}"):
            recurring = client.create_recurring_run(
                experiment_id=experiment_id,
                job_name=name,
                description=f"crispops submit, schedule {cron!r}",
                cron_expression=cron,
                max_concurrency=1,
                no_catchup=True,
                params=arguments,
                pipeline_id=pipeline_id,
                version_id=version_id,
                enabled=True,
            )
        run_id, recurring_run_id = None, recurring.recurring_run_id
    if not (run_id or recurring_run_id):
        raise SubmitError(f"KFP answered the creation of {name!r} without an id")
    replaced: list[str] = []
    if cron is not None:
        # KFP has no update of a recurring run: the new one (on the new version) is
        # created first, so a failure leaves the old schedule running, never none.
        for old in previous:
            if old == recurring_run_id:
                continue
            with calling(f"the removal of the replaced recurring run {old}"):
                client.delete_recurring_run(old)
            replaced.append(old)

    return SubmitResult(
        host=host,
        pipeline_name=pipeline_name,
        pipeline_id=pipeline_id,
        pipeline_version_id=version_id,
        pipeline_version_name=version_name,
        new_pipeline=new_pipeline,
        experiment_id=experiment_id,
        run_id=run_id,
        recurring_run_id=recurring_run_id,
        cron=cron,
        replaced_recurring_run_ids=tuple(replaced),
        url=_ui_url(host, run_id, recurring_run_id),
    )


def _recurring_runs_named(
    client: Any, experiment_id: str, name: str, pipeline_id: str
) -> list[str]:
    """Ids of the recurring runs in the experiment with this name, of this pipeline."""
    predicate = {"operation": "EQUALS", "key": "display_name", "stringValue": name}
    found: list[str] = []
    token = ""
    while True:
        page = client.list_recurring_runs(
            page_token=token,
            page_size=100,
            experiment_id=experiment_id,
            filter=json.dumps({"predicates": [predicate]}),
        )
        for recurring in page.recurring_runs or []:
            ref = recurring.pipeline_version_reference
            same_pipeline = ref is None or not ref.pipeline_id or ref.pipeline_id == pipeline_id
            if recurring.display_name == name and same_pipeline:
                found.append(recurring.recurring_run_id)
        token = page.next_page_token or ""
        if not token:
            return found
