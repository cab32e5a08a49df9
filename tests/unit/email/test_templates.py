from __future__ import annotations

from typing import Any

import pytest

from mimic.core.errors import Unprocessable
from mimic.email.rendering import Templates, html_to_text

TEMPLATES = Templates()

SAMPLES: dict[str, dict[str, Any]] = {
    "welcome": {"name": "Ann", "login_url": "https://app.example.com/login"},
    "password_reset": {
        "name": "Ann",
        "reset_url": "https://app.example.com/reset/abc",
        "expires_in_minutes": 30,
    },
    "subscription_activated": {
        "name": "Ann",
        "plan_name": "Pro",
        "next_billing_date": "2026-12-26",
    },
    "payment_failed": {
        "name": "Ann",
        "amount": "$12.00",
        "update_payment_url": "https://app.example.com/billing",
    },
    "invoice_receipt": {
        "name": "Ann",
        "invoice_number": "INV-42",
        "items": [
            {"description": "Pro plan", "amount": "$10.00"},
            {"description": "Tax", "amount": "$2.00"},
        ],
        "total": "$12.00",
        "invoice_url": "https://app.example.com/invoices/42",
    },
}

EXPECTED_SUBJECTS = {
    "welcome": "Welcome, Ann!",
    "password_reset": "Reset your password",
    "subscription_activated": "Your Pro subscription is active",
    "payment_failed": "Your payment of $12.00 failed",
    "invoice_receipt": "Receipt for invoice INV-42",
}


def test_every_shipped_template_has_a_sample() -> None:
    assert set(TEMPLATES.names()) == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_template_renders_with_sample_data(name: str) -> None:
    rendered = TEMPLATES.render(name, SAMPLES[name])
    assert rendered.subject == EXPECTED_SUBJECTS[name]
    assert rendered.html.lstrip().startswith("<!DOCTYPE html>")
    assert "Ann" in rendered.html
    assert "Ann" in rendered.text
    for value in SAMPLES[name].values():
        if isinstance(value, str) and value.startswith("https://"):
            assert value in rendered.html
            assert value in rendered.text
    assert set(TEMPLATES.describe(name).variables) == set(SAMPLES[name])


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_variable_is_required(name: str) -> None:
    for missing in SAMPLES[name]:
        data = {k: v for k, v in SAMPLES[name].items() if k != missing}
        with pytest.raises(Unprocessable) as info:
            TEMPLATES.render(name, data)
        assert info.value.code == "missing_variable"
        assert missing in info.value.message


def test_every_missing_variable_is_named_at_once() -> None:
    with pytest.raises(Unprocessable) as info:
        TEMPLATES.render("password_reset", {})
    assert info.value.message.endswith(f"not given: {', '.join(sorted(SAMPLES['password_reset']))}")


def test_an_unknown_template_error_lists_the_templates() -> None:
    with pytest.raises(Unprocessable) as info:
        TEMPLATES.render("welcom", {})
    assert info.value.message.endswith(", ".join(sorted(SAMPLES)))


def test_html_is_autoescaped_subject_and_text_are_not() -> None:
    rendered = TEMPLATES.render("welcome", {"name": "<b>&", "login_url": "https://x.example"})
    assert "&lt;b&gt;&amp;" in rendered.html
    assert "<b>&" not in rendered.html
    assert rendered.subject == "Welcome, <b>&!"
    assert "Welcome, <b>&!" in rendered.text


def test_subject_cannot_carry_header_breaks() -> None:
    rendered = TEMPLATES.render("welcome", {"name": "A\r\nBcc: x@example.com", "login_url": "u"})
    assert "\n" not in rendered.subject
    assert "\r" not in rendered.subject


def test_locale_variant_and_fallbacks() -> None:
    data = SAMPLES["welcome"]
    assert TEMPLATES.render("welcome", data, "es").subject == "¡Bienvenido, Ann!"
    assert TEMPLATES.render("welcome", data, "es-MX").subject == "¡Bienvenido, Ann!"
    assert TEMPLATES.render("welcome", data, "fr").subject == "Welcome, Ann!"
    # A locale with only some files falls back per file.
    assert "Iniciar sesión" in TEMPLATES.render("welcome", data, "es").html


def test_text_is_derived_from_html_when_absent() -> None:
    rendered = TEMPLATES.render("payment_failed", SAMPLES["payment_failed"])
    assert "Update payment method (https://app.example.com/billing)" in rendered.text
    assert "<" not in rendered.text
    assert "{" not in rendered.text  # no CSS leaks into the text part


def test_html_to_text_structure() -> None:
    text = html_to_text("<p>One<br>Two</p><ul><li>a</li><li>b</li></ul><style>x{}</style>")
    assert text == "One\nTwo\n\n- a\n- b\n"


@pytest.mark.parametrize("name", ["nope", "../etc", "_layout", "Welcome"])
def test_unknown_or_unsafe_names_are_unknown(name: str) -> None:
    with pytest.raises(Unprocessable) as info:
        TEMPLATES.render(name, {})
    assert info.value.code == "unknown_template"


def test_locales_are_bcp47_shaped_and_at_most_35_characters() -> None:
    longest = "en-" + "-".join(["abcdefgh"] * 3) + "-x1"  # 32 characters, valid shape
    assert TEMPLATES.render("welcome", SAMPLES["welcome"], longest).subject == "Welcome, Ann!"
    with pytest.raises(Unprocessable, match="at most 35") as info:
        TEMPLATES.render("welcome", SAMPLES["welcome"], "en" + "-ab" * 12)  # 38, valid shape
    assert info.value.code == "invalid_locale"
