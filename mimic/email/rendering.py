"""Email templates: ``mimic/email/templates/<name>/`` holds subject, HTML and text, per locale.

Files in a template folder:
  subject.txt, body.html, body.txt (optional: derived from the HTML when absent),
  and locale variants such as subject.es.txt / body.es.html (``pt-BR`` falls back to ``pt``,
  then to the default files). HTML bodies usually ``{% extends "_layout/base.html" %}``.
HTML is autoescaped; subject and text are not. A missing variable is an error
(``StrictUndefined``), never an empty string in a customer's inbox.
"""

from __future__ import annotations

import contextlib
import pathlib
import re
from html.parser import HTMLParser
from importlib import resources
from typing import Any

import jinja2
from jinja2 import meta

from mimic.core.errors import Unprocessable
from mimic.email.schemas import Rendered, TemplateInfo

#: Shipped inside the package, so an installed wheel renders as a source tree does.
TEMPLATES_DIR = pathlib.Path(str(resources.files("mimic.email") / "templates"))
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
#: BCP 47's longest useful tags fit (RFC 5646 asks implementations to take 35 characters).
MAX_LOCALE = 35
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


class _TextFromHtml(HTMLParser):
    """Readable plain text from rendered HTML: paragraphs, line breaks, list items, links."""

    _BLOCK = {"p", "div", "h1", "h2", "h3", "h4", "tr", "table", "ul", "ol", "hr"}
    _SKIP = {"style", "script", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in self._BLOCK:
            self.parts.append("\n\n")
        elif tag == "a":
            self._href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n\n")
        elif tag == "a" and self._href:
            self.parts.append(f" ({self._href})")
            self._href = None

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        raw = "".join(self.parts)
        lines = [line.strip() for line in raw.splitlines()]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def html_to_text(html: str) -> str:
    parser = _TextFromHtml()
    parser.feed(html)
    parser.close()
    return parser.text()


class Templates:
    def __init__(self, directory: pathlib.Path = TEMPLATES_DIR) -> None:
        self.directory = directory
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html",), default_for_string=False, default=False
            ),
            keep_trailing_newline=False,
            auto_reload=False,
        )

    def names(self) -> list[str]:
        return sorted(
            p.name
            for p in self.directory.iterdir()
            if p.is_dir() and _NAME.match(p.name) and (p / "subject.txt").exists()
        )

    def _require(self, name: str) -> pathlib.Path:
        folder = self.directory / name
        if not _NAME.match(name) or not (folder / "subject.txt").is_file():
            raise Unprocessable(
                f"unknown template {name!r}; the templates are: {', '.join(self.names())}",
                code="unknown_template",
            )
        return folder

    def _pick(self, name: str, stem: str, ext: str, locale: str | None) -> str | None:
        folder = self.directory / name
        candidates = []
        if locale:
            parts = re.split(r"[-_]", locale)
            candidates += [f"{stem}.{'-'.join(parts[:n])}.{ext}" for n in range(len(parts), 0, -1)]
        candidates.append(f"{stem}.{ext}")
        for candidate in candidates:
            if (folder / candidate).is_file():
                return f"{name}/{candidate}"
        return None

    def _render(self, path: str, data: dict[str, Any], name: str) -> str:
        try:
            return self.env.get_template(path).render(data)
        except jinja2.UndefinedError:
            missing = ", ".join(sorted(self._missing(name, data))) or "(see the template)"
            raise Unprocessable(
                f"template {name!r} needs variables that were not given: {missing}",
                code="missing_variable",
            ) from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise Unprocessable(
                f"template {name!r} could not use the data given: {exc}",
                code="invalid_template_data",
            ) from None

    def _missing(self, name: str, data: dict[str, Any]) -> set[str]:
        """Every variable the template's files look up and ``data`` lacks (rendering them again,
        leniently, after a strict render failed), so the caller can fix them all at once."""
        missing: set[str] = set()

        class Recording(jinja2.ChainableUndefined):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                if self._undefined_obj is jinja2.utils.missing and self._undefined_name:
                    missing.add(self._undefined_name)

        lenient = self.env.overlay(undefined=Recording)
        for part in sorted((self.directory / name).iterdir()):
            if part.suffix in (".txt", ".html"):
                with contextlib.suppress(Exception):
                    lenient.get_template(f"{name}/{part.name}").render(data)
        return missing

    def render(self, name: str, data: dict[str, Any], locale: str | None = None) -> Rendered:
        self._require(name)
        if locale is not None and (len(locale) > MAX_LOCALE or not _LOCALE.match(locale)):
            raise Unprocessable(
                f"locale must look like a BCP 47 tag (en, pt-BR), at most {MAX_LOCALE} "
                f"characters: {locale[:40]!r}",
                code="invalid_locale",
            )
        subject_path = self._pick(name, "subject", "txt", locale)
        html_path = self._pick(name, "body", "html", locale)
        if subject_path is None or html_path is None:
            raise Unprocessable(f"template {name!r} is incomplete", code="unknown_template")
        subject = " ".join(self._render(subject_path, data, name).split())
        html = self._render(html_path, data, name)
        text_path = self._pick(name, "body", "txt", locale)
        text = self._render(text_path, data, name) + "\n" if text_path else html_to_text(html)
        return Rendered(subject=subject, html=html, text=text)

    def _variables(self, path: str, seen: set[str]) -> set[str]:
        if path in seen:
            return set()
        seen.add(path)
        assert self.env.loader is not None
        source, _, _ = self.env.loader.get_source(self.env, path)
        ast = self.env.parse(source)
        found = set(meta.find_undeclared_variables(ast))
        for ref in meta.find_referenced_templates(ast):
            if ref:
                found |= self._variables(ref, seen)
        return found

    def describe(self, name: str) -> TemplateInfo:
        folder = self._require(name)
        files = [p.name for p in folder.iterdir() if p.is_file()]
        seen: set[str] = set()
        variables: set[str] = set()
        for file in files:
            variables |= self._variables(f"{name}/{file}", seen)
        locales = sorted({f.split(".")[1] for f in files if f.count(".") == 2})
        return TemplateInfo(
            name=name,
            variables=sorted(variables - set(self.env.globals)),
            locales=locales,
            has_text_part=(folder / "body.txt").is_file(),
        )
