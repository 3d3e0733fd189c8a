"""A fake Kubeflow Pipelines API server: the v2beta1 endpoints kfp.Client uses.

A stdlib HTTP server on 127.0.0.1 in a thread. It keeps pipelines, versions,
experiments, runs and recurring runs in memory, answers with JSON shaped like the
real API's (snake_case field names, ids, RFC 3339 ``created_at``), and records every
request (method, path, query, headers, JSON body, uploaded files) so tests can
assert exactly what the client sent. Failures can be injected per endpoint, and a
bearer token can be required.

With ``login_page=True`` it plays KFP behind an authenticating proxy (oauth2-proxy,
Dex): any API request without the required token is redirected (302) to an HTML
login page.

Endpoints:
  GET  /apis/v2beta1/healthz
  POST /apis/v2beta1/pipelines/upload            multipart ``uploadfile``; ?name=&description=
  POST /apis/v2beta1/pipelines/upload_version    multipart ``uploadfile``; ?name=&pipelineid=
  GET  /apis/v2beta1/pipelines                   ?filter= (display_name EQUALS)
  GET  /apis/v2beta1/pipelines/{id}
  GET  /apis/v2beta1/pipelines/{id}/versions     ?sort_by=created_at desc&page_size=
  GET  /apis/v2beta1/experiments                 ?filter=&namespace=
  POST /apis/v2beta1/experiments
  POST /apis/v2beta1/runs
  POST /apis/v2beta1/recurringruns
  GET  /apis/v2beta1/recurringruns               ?experiment_id=&filter= (display_name EQUALS)
  GET  /apis/v2beta1/recurringruns/{id}
  DELETE /apis/v2beta1/recurringruns/{id}
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/apis/v2beta1"

#: gRPC status codes KFP puts in its error bodies.
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 500: 13, 503: 14}


@dataclass
class Request:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    files: dict[str, bytes] = field(default_factory=dict)
    filenames: dict[str, str] = field(default_factory=dict)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Raw:
    """A non-JSON answer: content type, body and extra headers."""

    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


LOGIN_HTML = b"<!DOCTYPE html><html><body><form action='/dex/auth'>Log in</form></body></html>"


@dataclass
class Failure:
    method: str
    path: str
    status: int
    message: str
    times: int | None  # None: every time


def error_body(status: int, message: str) -> dict[str, Any]:
    """KFP's error shape (grpc-gateway): error, code, message, details."""
    return {"error": message, "code": GRPC_CODES.get(status, 2), "message": message, "details": []}


class FakeKFP:
    """Start with ``with FakeKFP() as kfp:``; ``kfp.url`` is the host for kfp.Client."""

    def __init__(self, *, multi_user: bool = False, login_page: bool = False) -> None:
        self.multi_user = multi_user
        self.login_page = login_page
        self.requests: list[Request] = []
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.packages: dict[str, bytes] = {}  # version id -> uploaded bytes
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.recurring_runs: dict[str, dict[str, Any]] = {}
        self.token: str | None = None
        self._failures: list[Failure] = []
        self._lock = threading.Lock()
        self._clock = itertools.count()
        self._epoch = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle ---------------------------------------------------------------------
    def start(self) -> FakeKFP:
        fake = self

        class Handler(_Handler):
            kfp = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeKFP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    # Test controls -----------------------------------------------------------------
    def fail(
        self, method: str, path: str, status: int, message: str, *, times: int | None = 1
    ) -> None:
        """Answer ``method path`` (path below /apis/v2beta1, e.g. "/runs") with an error."""
        self._failures.append(Failure(method.upper(), API + path, status, message, times))

    def require_token(self, token: str) -> None:
        """Answer 401 to any request without ``Authorization: Bearer <token>``."""
        self.token = token

    def find(self, method: str, path: str) -> list[Request]:
        """Recorded requests to ``method path`` (path below /apis/v2beta1)."""
        return [r for r in self.requests if r.method == method.upper() and r.path == API + path]

    def one(self, method: str, path: str) -> Request:
        found = self.find(method, path)
        assert len(found) == 1, f"{method} {path}: {len(found)} requests, expected 1"
        return found[0]

    def routes(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]

    # Helpers -----------------------------------------------------------------------
    def _now(self) -> str:
        # Strictly increasing timestamps, so "created_at desc" ordering is well defined.
        t = self._epoch + dt.timedelta(seconds=next(self._clock))
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _failure(self, method: str, path: str) -> Failure | None:
        for failure in self._failures:
            if failure.method == method and failure.path == path and failure.times != 0:
                if failure.times is not None:
                    failure.times -= 1
                return failure
        return None

    # Dispatch ----------------------------------------------------------------------
    def handle(self, req: Request) -> tuple[int, Any]:
        """(status, JSON payload or Raw) for one request; records it first."""
        with self._lock:
            self.requests.append(req)
            if req.path == "/login":
                return 200, Raw("text/html; charset=utf-8", LOGIN_HTML)
            authorized = self.token is not None and req.headers.get("authorization") == (
                f"Bearer {self.token}"
            )
            if self.login_page and not authorized:
                return 302, Raw("text/html", b"", {"Location": "/login"})
            if self.token is not None and not authorized:
                return 401, error_body(401, "Unauthenticated: missing or invalid bearer token")
            failure = self._failure(req.method, req.path)
            if failure is not None:
                return failure.status, error_body(failure.status, failure.message)
            return self._route(req)

    def _route(self, req: Request) -> tuple[int, Any]:
        m, p = req.method, req.path
        if m == "GET" and p == f"{API}/healthz":
            return 200, {"multi_user": self.multi_user}
        if m == "POST" and p == f"{API}/pipelines/upload":
            return self._upload(req)
        if m == "POST" and p == f"{API}/pipelines/upload_version":
            return self._upload_version(req)
        if m == "GET" and p == f"{API}/pipelines":
            return 200, _listing("pipelines", _filtered(self.pipelines.values(), req))
        found = re.fullmatch(rf"{API}/pipelines/([^/]+)", p)
        if m == "GET" and found and found[1] in self.pipelines:
            return 200, self.pipelines[found[1]]
        found = re.fullmatch(rf"{API}/pipelines/([^/]+)/versions", p)
        if m == "GET" and found:
            return self._list_versions(found[1], req)
        if m == "GET" and p == f"{API}/experiments":
            return 200, _listing("experiments", _filtered(self.experiments.values(), req))
        if m == "POST" and p == f"{API}/experiments":
            return self._create_experiment(req)
        if m == "POST" and p == f"{API}/runs":
            return self._create_run(req)
        if m == "POST" and p == f"{API}/recurringruns":
            return self._create_recurring_run(req)
        if m == "GET" and p == f"{API}/recurringruns":
            items = list(self.recurring_runs.values())
            experiment = req.param("experiment_id")
            if experiment:
                items = [r for r in items if r.get("experiment_id") == experiment]
            return 200, _listing("recurringRuns", _filtered(items, req))
        found = re.fullmatch(rf"{API}/recurringruns/([^/]+)", p)
        if m == "GET" and found and found[1] in self.recurring_runs:
            return 200, self.recurring_runs[found[1]]
        if m == "DELETE" and found:
            if self.recurring_runs.pop(found[1], None) is None:
                return 404, error_body(404, f"NotFound: recurring run {found[1]}")
            return 200, {}
        return 404, error_body(404, f"Not Found: {m} {p}")

    def _package(self, req: Request) -> bytes | None:
        data = req.files.get("uploadfile")
        if data is None:
            return None
        try:
            doc = next(iter(_yaml_docs(data)), None)
        except ValueError:
            return None
        return data if isinstance(doc, dict) and "pipelineInfo" in doc else None

    def _upload(self, req: Request) -> tuple[int, Any]:
        package = self._package(req)
        if package is None:
            return 400, error_body(400, "Invalid input error: uploadfile is not a pipeline spec")
        name = req.param("name") or req.param("display_name") or req.filenames["uploadfile"]
        if any(p["display_name"] == name for p in self.pipelines.values()):
            return 409, error_body(
                409,
                "Failed to create a pipeline and a pipeline version: Already exist error: "
                f"Failed to create a new pipeline. The name {name} already exists. "
                "Please specify a new name",
            )
        pipeline_id = str(uuid.uuid4())
        created = self._now()
        pipeline: dict[str, Any] = {
            "pipeline_id": pipeline_id,
            "display_name": name,
            "name": name,
            "created_at": created,
        }
        if req.param("description"):
            pipeline["description"] = req.param("description")
        if req.param("namespace"):
            pipeline["namespace"] = req.param("namespace")
        self.pipelines[pipeline_id] = pipeline
        self.versions[pipeline_id] = []
        self._add_version(pipeline_id, name, req.param("description"), package, created)
        return 200, pipeline

    def _upload_version(self, req: Request) -> tuple[int, Any]:
        pipeline_id = req.param("pipelineid") or ""
        if pipeline_id not in self.pipelines:
            return 404, error_body(404, f"Pipeline {pipeline_id} not found")
        package = self._package(req)
        if package is None:
            return 400, error_body(400, "Invalid input error: uploadfile is not a pipeline spec")
        name = req.param("name") or req.param("display_name") or req.filenames["uploadfile"]
        if any(v["display_name"] == name for v in self.versions[pipeline_id]):
            return 409, error_body(
                409, f"Already exist error: pipeline version {name} already exists"
            )
        version = self._add_version(
            pipeline_id, name, req.param("description"), package, self._now()
        )
        return 200, version

    def _add_version(
        self, pipeline_id: str, name: str, description: str | None, package: bytes, created: str
    ) -> dict[str, Any]:
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": str(uuid.uuid4()),
            "display_name": name,
            "name": name,
            "created_at": created,
            "pipeline_spec": next(iter(_yaml_docs(package))),
        }
        if description:
            version["description"] = description
        self.versions[pipeline_id].append(version)
        self.packages[version["pipeline_version_id"]] = package
        return version

    def _list_versions(self, pipeline_id: str, req: Request) -> tuple[int, Any]:
        if pipeline_id not in self.pipelines:
            return 404, error_body(404, f"Pipeline {pipeline_id} not found")
        versions = list(self.versions[pipeline_id])
        sort_by = (req.param("sort_by") or "").split()
        if sort_by:
            versions.sort(key=lambda v: str(v.get(sort_by[0], "")), reverse="desc" in sort_by)
        size = int(req.param("page_size") or 0)
        page = versions[:size] if size > 0 else versions
        return 200, _listing("pipeline_versions", page, total=len(versions))

    def _create_experiment(self, req: Request) -> tuple[int, Any]:
        body = req.json if isinstance(req.json, dict) else {}
        name = body.get("display_name")
        if not name:
            return 400, error_body(400, "Invalid input error: experiment display_name is empty")
        if any(e["display_name"] == name for e in self.experiments.values()):
            return 409, error_body(409, f"Already exist error: experiment {name} already exists")
        experiment = {
            "experiment_id": str(uuid.uuid4()),
            "display_name": name,
            "created_at": self._now(),
            "storage_state": "AVAILABLE",
        }
        for key in ("description", "namespace"):
            if body.get(key):
                experiment[key] = body[key]
        self.experiments[experiment["experiment_id"]] = experiment
        return 200, experiment

    def _check_run_body(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "Invalid input error: the request body is not a JSON object"
        if not body.get("display_name"):
            return "Invalid input error: display_name is empty"
        experiment_id = body.get("experiment_id")
        if experiment_id and experiment_id not in self.experiments:
            return f"Invalid input error: experiment {experiment_id} not found"
        ref = body.get("pipeline_version_reference")
        if ref is None and body.get("pipeline_spec") is None:
            return "Invalid input error: neither pipeline_spec nor pipeline_version_reference"
        if ref is not None:
            versions = self.versions.get(ref.get("pipeline_id", ""), [])
            if not any(
                v["pipeline_version_id"] == ref.get("pipeline_version_id") for v in versions
            ):
                return f"Invalid input error: pipeline version {ref} not found"
        return None

    def _create_run(self, req: Request) -> tuple[int, Any]:
        problem = self._check_run_body(req.json)
        if problem:
            return 400, error_body(400, problem)
        created = self._now()
        run = {
            **req.json,
            "run_id": str(uuid.uuid4()),
            "storage_state": "AVAILABLE",
            "created_at": created,
            "scheduled_at": created,
            "state": "PENDING",
            "state_history": [{"update_time": created, "state": "PENDING"}],
        }
        self.runs[run["run_id"]] = run
        return 200, run

    def _create_recurring_run(self, req: Request) -> tuple[int, Any]:
        problem = self._check_run_body(req.json)
        if problem:
            return 400, error_body(400, problem)
        body = req.json
        trigger = body.get("trigger") or {}
        cron = (trigger.get("cron_schedule") or {}).get("cron")
        periodic = trigger.get("periodic_schedule")
        if cron is None and periodic is None:
            return 400, error_body(400, "Invalid input error: the trigger has no schedule")
        if cron is not None and len(cron.split()) != 6 and not cron.startswith("@"):
            return 400, error_body(
                400, f"Invalid input error: invalid cron {cron!r}: expected exactly 6 fields"
            )
        created = self._now()
        recurring = {
            **body,
            "recurring_run_id": str(uuid.uuid4()),
            "created_at": created,
            "updated_at": created,
            "status": "ENABLED" if body.get("mode") == "ENABLE" else "DISABLED",
        }
        if isinstance(recurring.get("max_concurrency"), int):
            recurring["max_concurrency"] = str(recurring["max_concurrency"])  # int64 as string
        self.recurring_runs[recurring["recurring_run_id"]] = recurring
        return 200, recurring


def _yaml_docs(data: bytes) -> list[Any]:
    import yaml

    try:
        return list(yaml.safe_load_all(data))
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def _listing(key: str, items: list[dict[str, Any]], total: int | None = None) -> dict[str, Any]:
    # Proto3 JSON leaves out empty repeated fields.
    out: dict[str, Any] = {"total_size": len(items) if total is None else total}
    if items:
        out[key] = items
    return out


def _filtered(items: Any, req: Request) -> list[dict[str, Any]]:
    """Apply a v2beta1 filter: display_name EQUALS predicates (as kfp.Client sends them)."""
    out = list(items)
    raw = req.param("filter")
    if raw:
        for pred in json.loads(raw).get("predicates", []):
            if pred.get("operation") not in (1, "EQUALS"):
                continue
            value = pred.get("stringValue", pred.get("string_value"))
            out = [i for i in out if i.get(pred.get("key")) == value]
    namespace = req.param("namespace")
    if namespace:
        out = [i for i in out if i.get("namespace", "") == namespace]
    return out


class _Handler(BaseHTTPRequestHandler):
    kfp: FakeKFP

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Request(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers=headers,
            body=body,
        )
        ctype = headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            req.files, req.filenames = _multipart(ctype, body)
        elif body:
            try:
                req.json = json.loads(body)
            except ValueError:
                req.json = None
        try:
            status, payload = self.kfp.handle(req)
        except Exception as exc:  # a bug in the fake: answer 500, keep serving
            status, payload = 500, error_body(500, f"fake KFP error: {exc!r}")
        if isinstance(payload, Raw):
            data, ctype, extra = payload.body, payload.content_type, payload.headers
        else:
            data, ctype, extra = json.dumps(payload).encode(), "application/json", {}
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve


def _multipart(ctype: str, body: bytes) -> tuple[dict[str, bytes], dict[str, str]]:
    raw = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    files: dict[str, bytes] = {}
    names: dict[str, str] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        files[name] = payload if isinstance(payload, bytes) else b""
        names[name] = part.get_filename() or ""
    return files, names
