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
) -> None:
    """Serve the current champion's Bento on this machine (`bentoml serve`)."""
    from crispops.champion import read_champion
    from crispops.serving.runtime import serve_argv, serving_env

    s = settings(project)
    champion = read_champion(s.champion_file)
    if champion is None:
        raise UserError(f"{s.project_dir}: no champion yet; run `crispops run` first")
    envs = {**os.environ, **serving_env(s)}
    argv = serve_argv(champion.bento_tag, host or s.serving.host, port or s.serving.port)
    err.print(
        f"serving {champion.bento_tag} ({champion.metric} {champion.score:.4f}) on "
        f"http://{host or s.serving.host}:{port or s.serving.port}"
    )
    os.execve(sys.executable, argv, envs)


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
    import httpx

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
    try:
        resp = httpx.post(url.rstrip("/") + path, json=body, timeout=30)
    except httpx.HTTPError as exc:
        raise UserError(
            f"{url}: cannot reach the service ({exc}); is `crispops serve` running?"
        ) from None
    if resp.status_code >= 400:
        err.print(f"[bold red]{resp.status_code}[/] {resp.text}", highlight=False)
        raise typer.Exit(EXIT_FAILED)
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
    import httpx

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
    try:
        resp = httpx.post(url.rstrip("/") + "/feedback", json={"records": records}, timeout=30)
    except httpx.HTTPError as exc:
        raise UserError(
            f"{url}: cannot reach the service ({exc}); is `crispops serve` running?"
        ) from None
    if resp.status_code >= 400:
        err.print(f"[bold red]{resp.status_code}[/] {resp.text}", highlight=False)
        raise typer.Exit(EXIT_FAILED)
    answer = resp.json()
    console.print(f"{answer['stored']} label(s) stored")
    for e in answer.get("errors", []):
        err.print(f"[red]{e['request_id']}[/]: {e['error']}", highlight=False, soft_wrap=True)
    if answer.get("errors"):
        raise typer.Exit(EXIT_FAILED)
