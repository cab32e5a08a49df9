"""One registry entry per provider name, agreeing with the provider vocabularies."""

from __future__ import annotations

from typing import get_args

from mimic.core.settings import EmailProvider
from mimic.email.providers.registry import REGISTRY
from mimic.email.schemas import CredentialProvider


def test_every_provider_name_has_one_entry_under_its_own_name() -> None:
    assert set(REGISTRY) == set(get_args(EmailProvider))
    assert all(name == provider.name for name, provider in REGISTRY.items())


def test_tenants_bring_credentials_for_the_credential_providers_alone() -> None:
    byok = {name for name, provider in REGISTRY.items() if provider.credential is not None}
    assert byok == set(get_args(CredentialProvider))
