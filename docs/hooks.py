"""MkDocs hooks: the reference pages are generated from the code at build time.

A page asks for a generated part with a line of its own, ``<!-- generated: NAME -->``, where
NAME is a key of ``GENERATORS``: the settings (from ``mimic.core.settings``: each field's ``#:``
comment, variable, default and accepted values), the HTTP API (from the app's OpenAPI
document, also added to the site as ``reference/openapi.json``), the CLI (the ``--help`` of
every parser in ``mimic.cli``), the metrics (``mimic.core.metrics``) and the log fields (the
ids a job's lines carry, from the worker's tasks). ``tests/unit/test_docs.py`` checks that
every setting has its comment and that the docs name no variable that does not exist.
"""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import json
import pathlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from prometheus_client.metrics import MetricWrapperBase

from mimic.core import metrics, settings

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)
#: A DSN for building the app and the worker's task list; nothing connects to it.
_NO_DATABASE = {"DATABASE_URL": "postgresql://docs@docs.invalid/docs"}

#: Variables Mimic reads outside the settings structs: the name, the file that reads it
#: (the test checks it does), its default and what it does.
OTHER_VARIABLES: dict[str, tuple[str, str, str]] = {
    "MIMIC_URL": (
        "mimic/cli.py",
        "`http://MIMIC_HOST:MIMIC_PORT`",
        "where `uv run mimic events|event|replay|retry|destinations|routes` call the admin API",
    ),
    "MIMIC_API_KEY": (
        "mimic/cli.py",
        "the first of `MIMIC_API_KEYS` (dev: `mimic-dev-key`)",
        "the admin key those commands send",
    ),
    "WORKER_CONCURRENCY": (
        "mimic/core/settings.py",
        "",
        "refused at startup: replaced by `WORKER_CONCURRENCY_WEBHOOKS` and "
        "`WORKER_CONCURRENCY_EMAIL`",
    ),
    "TEST_DATABASE_URL": (
        "tests/conftest.py",
        "unset",
        "`make test`: the Postgres server the tests use (each test gets a database of its own); "
        "unset: testcontainers when a Docker engine answers, else the embedded PostgreSQL",
    ),
    "SOAK_MINUTES": ("Makefile", "`10`", "how long `make soak` runs"),
}


# --- configuration ------------------------------------------------------------------------------


class Setting(msgspec.Struct, frozen=True):
    variable: str
    group: str
    field: str
    default: str
    accepted: str
    description: str


def _field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comment above each field of a settings class, joined into one line."""
    source = pathlib.Path(inspect.getfile(cls)).read_text().splitlines()
    tree = ast.parse(inspect.getsource(cls))
    first = inspect.getsourcelines(cls)[1]
    comments: dict[str, str] = {}
    for node in tree.body[0].body:  # type: ignore[attr-defined]
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        line = first + node.lineno - 3  # the line above the field, 0-based in ``source``
        parts: list[str] = []
        while line >= 0 and source[line].strip().startswith("#:"):
            parts.insert(0, source[line].strip().removeprefix("#:").strip())
            line -= 1
        comments[node.target.id] = " ".join(parts)
    return comments


def _default(field: msgspec.structs.FieldInfo) -> str:
    value = field.default
    if value is msgspec.NODEFAULT and field.default_factory is not msgspec.NODEFAULT:
        value = field.default_factory()
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def all_settings() -> list[Setting]:
    """Every setting, in the order of the groups and their fields; MIMIC_ENV first."""
    env_comment = _field_comments(settings.Settings)["env"]
    found = [
        Setting(
            variable="MIMIC_ENV",
            group="",
            field="env",
            default="`dev`",
            accepted=settings.choice(settings.Env).hint,
            description=env_comment,
        )
    ]
    for group, cls in settings.GROUPS.items():
        env: dict[str, tuple[str, settings.Parser]] = cls.ENV  # type: ignore[attr-defined]
        comments = _field_comments(cls)
        for field in msgspec.structs.fields(cls):
            variable, parser = env[field.name]
            found.append(
                Setting(
                    variable=variable,
                    group=group,
                    field=field.name,
                    default=_default(field),
                    accepted=parser.hint,
                    description=comments.get(field.name, ""),
                )
            )
    return found


def known_variables() -> set[str]:
    return {s.variable for s in all_settings()} | set(OTHER_VARIABLES)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def configuration() -> str:
    rows: list[str] = []
    titles = {"": "Environment", **{g: g.capitalize() for g in settings.GROUPS}}
    current = None
    for s in all_settings():
        if s.group != current:
            current = s.group
            cls = settings.GROUPS.get(s.group, settings.Settings)
            doc = (cls.__doc__ or "").strip() if s.group else ""
            rows += ["", f"### {titles[s.group]}", ""]
            if doc and not doc.startswith(cls.__name__):
                rows += [doc, ""]
            rows += [
                "| variable | default | accepted | what it does |",
                "| --- | --- | --- | --- |",
            ]
        rows.append(
            f"| `{s.variable}` | {_cell(s.default)} | {_cell(s.accepted)} | "
            f"{_cell(s.description)} |"
        )
    rows += [
        "",
        "### Outside the settings",
        "",
        "| variable | default | what it does |",
        "| --- | --- | --- |",
    ]
    for name, (_, default, text) in OTHER_VARIABLES.items():
        rows.append(f"| `{name}` | {default} | {_cell(text)} |")
    return "\n".join(rows) + "\n"


# --- HTTP API -----------------------------------------------------------------------------------


@functools.cache
def openapi_schema() -> dict[str, Any]:
    from mimic.app import create_app

    app = create_app(settings.Settings.from_env(_NO_DATABASE))
    schema: dict[str, Any] = app.openapi_schema.to_schema()
    return schema


def _escape_html(text: str) -> str:
    """``<`` outside code spans, so ``<your host>`` is shown rather than taken for a tag."""
    parts = text.split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts))


def http_api() -> str:
    schema = openapi_schema()
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            if isinstance(op, dict) and "responses" in op:
                tag = (op.get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append((path, method.upper(), op))
    out: list[str] = []
    for tag in schema.get("tags", []):
        ops = by_tag.pop(tag["name"], [])
        out += [f"## {tag['name'].capitalize()}", "", _escape_html(tag.get("description", "")), ""]
        for path, method, op in ops:
            out += [f"### `{method} {path}`", "", f"**{_escape_html(op.get('summary', ''))}**", ""]
            if op.get("description"):
                out += [_escape_html(op["description"].strip()), ""]
            params = op.get("parameters") or []
            if params:
                out += ["| parameter | in | required | description |", "| --- | --- | --- | --- |"]
                for p in params:
                    text = _cell(_escape_html(p.get("description", "") or ""))
                    required = "yes" if p.get("required") else ""
                    out.append(f"| `{p['name']}` | {p['in']} | {required} | {text} |")
                out.append("")
            body = op.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                ref = content.get("schema", {}).get("$ref", "")
                name = ref.rsplit("/", 1)[-1] if ref else "see the schema"
                out += [f"Request body: `{media}`, `{name}`.", ""]
            out += ["| status | meaning |", "| --- | --- |"]
            for status, response in sorted(op["responses"].items()):
                text = _cell(_escape_html(response.get("description", "")))
                out.append(f"| {status} | {text} |")
            out.append("")
    return "\n".join(out) + "\n"


# --- CLI ----------------------------------------------------------------------------------------


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


def _help(parser: argparse.ArgumentParser) -> str:
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=96)
    if hasattr(parser, "color"):
        setattr(parser, "color", False)  # noqa: B010 (Python 3.14: no escape codes in the page)
    return parser.format_help()


def cli() -> str:
    from mimic.cli import build_parser

    out: list[str] = []
    for parser in _parsers(build_parser()):
        command = parser.prog.removeprefix("mimic").strip()
        title = f"uv run mimic {command}".strip()
        out += [f"## `{title}`", "", "```text", _help(parser).rstrip(), "```", ""]
    return "\n".join(out)


# --- metrics and logs ---------------------------------------------------------------------------


def metrics_table() -> str:
    out = ["| metric | type | labels | what it counts |", "| --- | --- | --- | --- |"]
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        family = next(iter(value.describe()))
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = ", ".join(f"`{label}`" for label in value._labelnames)
        out.append(f"| `{name}` | {family.type} | {labels} | {_cell(family.documentation)} |")
    return "\n".join(out) + "\n"


def log_fields() -> str:
    from mimic.worker import PERIODIC, build_app

    app = build_app(settings.Settings.from_env(_NO_DATABASE))
    out = [
        "| task | queue | ids on its log lines | periodic |",
        "| --- | --- | --- | --- |",
    ]
    for name, task in sorted(app.tasks.items()):
        if not name.startswith("mimic."):
            continue
        ids = [p for p in inspect.signature(task.func).parameters if p.endswith("_id")]
        shown = ", ".join(f"`{i}`" for i in ["job_id", *ids])
        cron = f"`{PERIODIC[name]}`" if name in PERIODIC else ""
        out.append(f"| `{name}` | `{task.queue}` | {shown} | {cron} |")
    return "\n".join(out) + "\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "configuration": configuration,
    "http-api": http_api,
    "cli": cli,
    "metrics": metrics_table,
    "log-fields": log_fields,
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    return MARKER.sub(lambda m: GENERATORS[m[1]](), markdown)


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    """The OpenAPI document beside the HTTP API page, for tools (and reading offline)."""
    content = json.dumps(openapi_schema(), indent=2) + "\n"
    files.append(File.generated(config, "reference/openapi.json", content=content))
    return files
