"""The docs site's generated reference (docs/hooks.py) against the code it documents."""

from __future__ import annotations

import pathlib
import re

from docs import hooks
from tests.helpers import ROOT

DOCS = ROOT / "docs"
#: A name the docs write like a variable, `UPPER_SNAKE`, in backticks.
VARIABLE = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)")
#: Upper-snake names in the docs that are not Mimic's settings, and why they appear.
NOT_MIMIC_SETTINGS = {
    "CELERY_BROKER_URL",  # the seed's, gone
    "CELERY_RESULT_BACKEND",  # the seed's, gone
    "POSTGRES_PASSWORD",  # compose.yaml's Postgres
    "CRM_TOKEN",  # the routes-file example's secrets, named by the file
    "CRM_WEBHOOK_SECRET",
    "PROCRASTINATE_APP",  # procrastinate's own CLI
    "NO_MKDOCS_2_WARNING",
}


def mentioned(path: pathlib.Path) -> set[str]:
    return set(VARIABLE.findall(path.read_text()))


def test_every_setting_is_documented_by_its_comment() -> None:
    undocumented = [s.variable for s in hooks.all_settings() if not s.description]
    assert undocumented == [], f"add a `#:` comment above these fields: {undocumented}"


def test_the_configuration_page_names_only_variables_that_exist() -> None:
    unknown = mentioned(DOCS / "reference" / "configuration.md") - hooks.known_variables()
    assert unknown == set(), f"the configuration page names variables Mimic lacks: {unknown}"


def test_no_page_names_a_variable_that_does_not_exist() -> None:
    pages = [ROOT / "README.md", *DOCS.rglob("*.md")]
    known = hooks.known_variables() | NOT_MIMIC_SETTINGS
    unknown = {f"{p.relative_to(ROOT)}: {name}" for p in pages for name in mentioned(p) - known}
    assert unknown == set()


def test_the_variables_outside_the_settings_are_read_where_the_docs_say() -> None:
    for name, (path, _, _) in hooks.OTHER_VARIABLES.items():
        assert name in (ROOT / path).read_text(), f"{name} is not in {path}"


def test_the_generated_configuration_lists_every_variable_with_its_default() -> None:
    page = hooks.configuration()
    for setting in hooks.all_settings():
        assert f"| `{setting.variable}` | {setting.default} |" in page
    assert "| `EMAIL_FROM` | `Mimic <no-reply@mimic.local>` |" in page
    assert "| `DATABASE_URL` | unset |" in page


def test_the_field_comment_is_the_description() -> None:
    found = {s.variable: s for s in hooks.all_settings()}
    assert found["STALLED_SWEEP_SECONDS"].description == (
        "How often the sweep looks for jobs of dead workers (at most every 60 s)."
    )
    assert found["STALLED_SWEEP_SECONDS"].accepted == "an integer between 1 and 60"


def test_the_other_references_come_from_the_code() -> None:
    assert "### `POST /api/v1/notifications/email`" in hooks.http_api()
    cli = hooks.cli()
    assert "## `uv run mimic keys create`" in cli
    assert "--processes PROCESSES" in cli
    assert "\x1b[" not in cli
    assert "`mimic_queue_oldest_todo_seconds` | gauge | `queue`" in hooks.metrics_table()
    assert "| `mimic.tasks.send_email` | `email` | `job_id`, `notification_id`" in (
        hooks.log_fields()
    )


def test_every_marker_names_a_generator() -> None:
    for page in DOCS.rglob("*.md"):
        for name in hooks.MARKER.findall(page.read_text()):
            assert name in hooks.GENERATORS, f"{page}: no generator {name!r}"


def test_the_readme_is_short_and_its_links_into_the_docs_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    lines = readme.splitlines()
    top = "\n".join(lines[:10])
    assert "make run    # API on http://127.0.0.1:8006" in top
    assert "make test   # installs what it needs" in top
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).exists(), target


def test_commands_are_written_as_a_checkout_runs_them() -> None:
    """From a checkout `mimic` is not on the PATH: `uv run mimic ...` or a make target."""
    bare = re.compile(
        r"(?<!uv run )(?<![\w.-])mimic (api|worker|migrate|run|events|event|replay|"
        r"retry|keys|jobs|destinations|routes|rotate-keys)\b(?!:)"
    )
    for page in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            assert not bare.search(line), f"{page.relative_to(ROOT)}:{number}: {line}"
