"""Every email provider by name: what the sender, the submit path, tracking and BYOK look up
instead of switching on a provider's name. A provider is one module that fills in a
``Provider`` and one line here; the names are the ``EmailProvider`` vocabulary (a test
compares them)."""

from __future__ import annotations

from mimic.email.providers import Provider, dev, postmark, resend, smtp

REGISTRY: dict[str, Provider] = {
    p.name: p for p in (dev.PROVIDER, smtp.PROVIDER, resend.PROVIDER, postmark.PROVIDER)
}
