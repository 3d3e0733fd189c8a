"""`crispops serve|predict|feedback`: the champion's Bento on this machine, and a small
client for its predictions and the labels that come back."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from crispops.cli.common import (
    EXIT_FAILED,
    ProjectOpt,
    UserError,
    console,
    err,
    handle_errors,
    settings,
)


@handle_errors
def serve(
    project: ProjectOpt = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port (default: serving.port).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address (default: serving.host).")] = None,
    challenger: Annotated[
        str | None,
        typer.Option(
            help="A challenger's model or Bento tag (`crispops models`): served beside the "
            "champion, which routes to it (with --shadow or --canary)."
        ),
    ] = None,
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow",
            help="Every answer from the champion; the challenger scores the same "
            "records off the request path, and both are logged.",
        ),
    ] = False,
    canary: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=100,
            help="Percent of entities (by a stable hash of their keys) the challenger answers.",
        ),
    ] = None,
    challenger_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="The challenger's port (default: port + 1)."),
    ] = None,
) -> None:
    """Serve the current champion's Bento on this machine (`bentoml serve`); with
    --challenger, a challenger beside it in shadow or canary."""
    from crispops.champion import read_champion
    from crispops.serving.runtime import serve_argv, serving_env

    s = settings(project)
    champion = read_champion(s.champion_file)
    if champion is None:
        raise UserError(f"{s.project_dir}: no champion yet; run `crispops run` first")
    host = host or s.serving.host
    port = port or s.serving.port
    envs = {**os.environ, **serving_env(s)}
    argv = serve_argv(champion.bento_tag, host, port)
    if challenger is None:
        if shadow or canary is not None:
            raise UserError("--shadow and --canary need --challenger TAG")
        err.print(
            f"serving {champion.bento_tag} ({champion.metric} {champion.score:.4f}) on "
            f"http://{host}:{port}"
        )
        os.execve(sys.executable, argv, envs)
    if shadow == (canary is not None):
        raise UserError("--challenger needs one of --shadow or --canary PERCENT")
    _serve_with_challenger(s, champion, challenger, shadow, canary, host, port, challenger_port)


def _serve_with_challenger(
    s: Any,
    champion: Any,
    tag: str,
    shadow: bool,
    canary: float | None,
    host: str,
    port: int,
    challenger_port: int | None,
) -> None:
    """The challenger's `bentoml serve` on its own port, then the champion's, routing to
    it through a settings file of the project's state; both stopped together."""
    import signal
    import subprocess
    import time

    from crispops.io import write_json
    from crispops.registry import find
    from crispops.serving.router import CONFIG_ENV
    from crispops.serving.runtime import (
        serve_argv,
        serving_env,
        start_server,
        stop_server,
        wait_ready,
    )

    entry = find(s.models_file, tag)
    if entry.bento_tag == champion.bento_tag:
        raise UserError(f"--challenger {tag}: that is the champion itself")
    cport = challenger_port or port + 1
    if cport == port:
        raise UserError(f"--challenger-port {cport} is the champion's port")
    url = f"http://127.0.0.1:{cport}"
    config = {
        "mode": "shadow" if shadow else "canary",
        "weight": 100 if shadow else canary,
        "challenger_url": url,
        "challenger_model_tag": entry.model_tag,
        "challenger_bento_tag": entry.bento_tag,
        "champion_bento_tag": champion.bento_tag,
    }
    config_file = write_json(s.state_path / "router.json", config)
    envs = {**os.environ, **serving_env(s)}
    envs.pop(CONFIG_ENV, None)  # the challenger routes nowhere
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = start_server(argv, env)
        procs.append(proc)
        return proc

    def stop(*_: Any) -> None:
        for proc in reversed(procs):
            stop_server(proc, timeout=15)

    def on_term(*_: Any) -> None:
        stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    try:
        err.print(f"challenger {entry.bento_tag} ({entry.status}) on {url}", highlight=False)
        chall = start(serve_argv(entry.bento_tag, "127.0.0.1", cport), envs)
        wait_ready(chall, url, 180, "the challenger's server")
        how = "shadow (answers from the champion)" if shadow else f"canary {canary:g}%"
        err.print(
            f"serving {champion.bento_tag} on http://{host}:{port}, {how} to {entry.model_tag} "
            f"(router settings: {config_file}; edit its weight to step without a restart)",
            highlight=False,
        )
        champ = start(
            serve_argv(champion.bento_tag, host, port), {**envs, CONFIG_ENV: str(config_file)}
        )
        while champ.poll() is None and chall.poll() is None:
            time.sleep(0.5)
        if champ.returncode:
            raise typer.Exit(champ.returncode)
    except KeyboardInterrupt:
        pass
    finally:
        stop()


def _value(text: str) -> Any:
    """A number when the text is one as JSON writes it (``19700101_0001`` stays text,
    although Python's int() would read it), else the text."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?", text):
        return float(text)
    return text


def _entity(keys: list[str], text: str) -> dict[str, Any]:
    """``1001`` (one join key) or ``zipcode=10001,dob_ssn=19530219_5179`` -> a record."""
    if "=" not in text:
        if len(keys) != 1:
            raise UserError(
                f"--entity {text!r}: this project joins on {', '.join(keys)}; "
                f"give each: --entity {','.join(k + '=VALUE' for k in keys)}"
            )
        return {keys[0]: _value(text)}
    record: dict[str, Any] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or name not in keys:
            raise UserError(
                f"--entity {text!r}: {part!r} is not KEY=VALUE with KEY one of {', '.join(keys)}"
            )
        record[name] = _value(value)
    missing = [k for k in keys if k not in record]
    if missing:
        raise UserError(f"--entity {text!r}: no value for {', '.join(missing)}")
    return record


def _post(url: str, path: str, body: Any) -> Any:
    """POST to a running service; a clear error when none answers, exit 1 on a 4xx/5xx
    (its body printed)."""
    import httpx

    try:
        resp = httpx.post(url.rstrip("/") + path, json=body, timeout=30)
    except httpx.HTTPError as exc:
        raise UserError(
            f"{url}: cannot reach the service ({exc}); is `crispops serve` running?"
        ) from None
    if resp.status_code >= 400:
        err.print(f"[bold red]{resp.status_code}[/] {resp.text}", highlight=False)
        raise typer.Exit(EXIT_FAILED)
    return resp


@handle_errors
def predict(
    entity: Annotated[
        list[str] | None,
        typer.Option(
            "--entity",
            "-e",
            help="Entity to score by its online features (repeatable): its key, or "
            "KEY=VALUE,KEY=VALUE with every join key when there are several.",
        ),
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field", "-f", help="NAME=VALUE request-time field, sent with every entity."
        ),
    ] = None,
    records: Annotated[
        Path | None,
        typer.Option(
            "--records", help="JSON file: a list of records holding every feature (POST /predict)."
        ),
    ] = None,
    url: Annotated[str, typer.Option(help="Service address.")] = "http://127.0.0.1:3000",
    project: ProjectOpt = None,
) -> None:
    """Call a running service: by entity key (/predict_entity) or with feature values
    (/predict)."""

    if bool(entity) == bool(records):
        raise UserError("give --entity KEY (with --field NAME=VALUE) or --records FILE")
    if records is not None:
        try:
            body: Any = {"records": json.loads(records.read_text())}
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"--records {records}: {exc}") from None
        path = "/predict"
    else:
        s = settings(project)
        extra: dict[str, Any] = {}
        for item in field or []:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise UserError(f"--field {item!r}: expected NAME=VALUE")
            extra[name] = _value(value)
        body = {"records": [{**_entity(s.data.join_keys, e), **extra} for e in entity or []]}
        path = "/predict_entity"
    resp = _post(url, path, body)
    console.print_json(resp.text)
    ids = [a.get("request_id") for a in resp.json() if isinstance(a, dict)]
    if any(ids):
        err.print(
            "request ids (for `crispops feedback --request-id ID --label LABEL`): "
            + " ".join(str(i) for i in ids),
            highlight=False,
            soft_wrap=True,
        )


@handle_errors
def feedback(
    request_id: Annotated[
        list[str],
        typer.Option("--request-id", "-r", help="A logged prediction's id (repeatable)."),
    ],
    label: Annotated[
        list[str],
        typer.Option(
            "--label", "-l", help="Its observed label (one per --request-id, or one for all)."
        ),
    ],
    observed_at: Annotated[
        str | None,
        typer.Option(help="When the outcome was observed (ISO 8601 with a zone; default now)."),
    ] = None,
    url: Annotated[str, typer.Option(help="Service address.")] = "http://127.0.0.1:3000",
) -> None:
    """Return labels for logged predictions (POST /feedback); exits non-zero when any
    label was not stored, naming why."""

    if len(label) not in (1, len(request_id)):
        raise UserError(
            f"{len(request_id)} --request-id but {len(label)} --label: give one label "
            "for all, or one per request id"
        )
    labels = label * len(request_id) if len(label) == 1 else label
    records: list[dict[str, Any]] = []
    for rid, text in zip(request_id, labels, strict=True):
        rec: dict[str, Any] = {"request_id": rid, "label": _value(text)}
        if observed_at is not None:
            rec["observed_at"] = observed_at
        records.append(rec)
    resp = _post(url, "/feedback", {"records": records})
    answer = resp.json()
    console.print(f"{answer['stored']} label(s) stored")
    for e in answer.get("errors", []):
        err.print(f"[red]{e['request_id']}[/]: {e['error']}", highlight=False, soft_wrap=True)
    if answer.get("errors"):
        raise typer.Exit(EXIT_FAILED)
