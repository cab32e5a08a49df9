"""Every query the code names exists in its feature's queries.sql, and none is unused."""

from __future__ import annotations

import pathlib
import re

import pytest

from mimic.core.db import load_queries, parse_queries

PACKAGE = pathlib.Path(__file__).resolve().parents[3] / "mimic"
FEATURES = sorted(p.parent.name for p in PACKAGE.glob("*/queries.sql"))
assert FEATURES == ["core", "email", "events"]


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
