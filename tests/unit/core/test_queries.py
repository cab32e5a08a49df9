"""Every query the code names exists in its feature's queries.sql, and none is unused; the
modules moved to queries.sql write no SQL of their own."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from mimic.core.db import load_queries, parse_queries

PACKAGE = pathlib.Path(__file__).resolve().parents[3] / "mimic"
FEATURES = sorted(p.parent.name for p in PACKAGE.glob("*/queries.sql"))
assert FEATURES == ["console", "core", "email", "events"]


@pytest.mark.parametrize("feature", FEATURES)
def test_named_queries_exist_and_are_used(feature: str) -> None:
    defined = set(load_queries(f"mimic.{feature}"))
    used: set[str] = set()
    for source in PACKAGE.rglob("*.py"):
        used |= set(re.findall(r'queries\["([a-z0-9_]+)"\]', source.read_text()))
    mine = {name for name in used if name in defined}
    assert defined - used == set(), f"unused queries in {feature}"
    assert mine, f"no code uses mimic/{feature}/queries.sql"


def test_every_named_query_is_defined_somewhere() -> None:
    defined: set[str] = set()
    for feature in FEATURES:
        defined |= set(load_queries(f"mimic.{feature}"))
    used: set[str] = set()
    for source in PACKAGE.rglob("*.py"):
        used |= set(re.findall(r'queries\["([a-z0-9_]+)"\]', source.read_text()))
    assert used - defined == set()


def test_parser_keeps_sql_drops_descriptions_and_rejects_duplicates() -> None:
    text = "-- name: a\n-- what a does\nSELECT 1\n\n-- name: b\nSELECT $1\n"
    assert parse_queries(text, "t") == {"a": "SELECT 1", "b": "SELECT $1"}
    with pytest.raises(ValueError, match="duplicate query 'a' in t"):
        parse_queries(text + "-- name: a\nSELECT 2\n", "t")


#: Modules whose SQL lives in their domain's queries.sql: no statement is written (or built)
#: in their code.
SQL_FREE = [
    "core/audit.py",
    "core/circuits.py",
    "core/keys.py",
    "core/health.py",
    "core/ratelimit.py",
    "email/suppression.py",
    "events/gateway.py",
    "console/controller.py",
]
_STATEMENT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\s")


@pytest.mark.parametrize("module", SQL_FREE)
def test_module_names_its_queries_instead_of_writing_sql(module: str) -> None:
    source = (PACKAGE / module).read_text()
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    inline = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and _STATEMENT.match(node.value)
    ]
    assert inline == [], f"inline SQL in mimic/{module} at lines {inline}"
    assert 'queries["' in source, f"mimic/{module} names none of its queries"
