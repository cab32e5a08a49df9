"""Accepting email (the API side): check a request, choose its providers and its sender
(for a tenant key: only from the tenant's own domains, and through the platform's providers
only when an admin allowed it), render it, and store and queue it (one at a time through the
group commit, or a batch at once). An Idempotency-Key reused with the same body answers as
the first time did."""

from __future__ import annotations

import email.utils
import logging
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

from mimic.core import metrics
from mimic.core.batching import GroupCommit, group_commit
from mimic.core.deps import Deps
from mimic.core.errors import Conflict, Forbidden, MimicError, Unprocessable
from mimic.core.keys import TENANT_ID, check_tenant
from mimic.core.settings import EmailProvider
from mimic.email import quota, repository, status, suppression
from mimic.email.addresses import domain_of, validate_address, validate_addresses
from mimic.email.providers.registry import REGISTRY
from mimic.email.rendering import Templates
from mimic.email.repository import IdempotencyRecord
from mimic.email.schemas import Accepted, EmailRequest, Recipients
from mimic.email.tenants import SenderPolicy, sender_policies

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 50


def check_recipients(request: EmailRequest) -> Recipients:
    to = [request.to] if isinstance(request.to, str) else request.to
    if not to:
        raise Unprocessable("to: at least one recipient is required", code="invalid_address")
    total = len(to) + len(request.cc) + len(request.bcc)
    if len(to) > MAX_RECIPIENTS or total > MAX_RECIPIENTS:
        raise Unprocessable(
            f"at most {MAX_RECIPIENTS} recipients (to, cc and bcc together)",
            code="too_many_recipients",
        )
    return Recipients(
        to=validate_addresses(to, "to"),
        cc=validate_addresses(request.cc, "cc"),
        bcc=validate_addresses(request.bcc, "bcc"),
        reply_to=validate_address(request.reply_to, "reply_to") if request.reply_to else None,
        sender=validate_address(request.sender, "from") if request.sender else None,
    )


#: Tag names Mimic keeps for itself (the Postmark duplicate check reads mimic_notification_id).
RESERVED_TAG_PREFIX = "mimic_"


def check_tags(tags: dict[str, str]) -> None:
    reserved = sorted(name for name in tags if name.lower().startswith(RESERVED_TAG_PREFIX))
    if reserved:
        raise Unprocessable(
            f"tags: names starting with {RESERVED_TAG_PREFIX!r} are reserved for Mimic: "
            + ", ".join(reserved),
            code="reserved_tag",
        )


def _platform_order(deps: Deps, request: EmailRequest) -> list[EmailProvider]:
    """The platform's providers for this request: the one it names, else EMAIL_PROVIDERS (or
    EMAIL_PROVIDER), those the platform has keys for."""
    wanted = [request.provider] if request.provider else list(deps.settings.email.provider_order)
    order = [p for p in wanted if REGISTRY[p].configured(deps.settings.email)]
    if not order:
        raise Unprocessable(
            f"provider {wanted[0]!r} has no credentials for this tenant or the platform",
            code="provider_not_configured",
        )
    return order


def _settings_url(tenant_id: str) -> str:
    return f"/api/v1/tenants/{tenant_id}/settings"


def check_sender(recipients: Recipients, policy: SenderPolicy, *, via_platform: bool) -> None:
    """The sender rule for a tenant key: ``from`` and ``reply_to`` at one of the tenant's
    domains, compared exactly (a subdomain is not its parent). Through the tenant's own
    credentials those are its credentials' from_email domains and the sender_domains an
    admin set; through the platform's providers only the latter: a credential's from_email
    is the tenant's own claim, checked by nobody but that credential's provider, and the
    platform's signature must not vouch for it."""
    tenant = policy.tenant_id
    allowed = list(policy.sender_domains)
    if not via_platform:
        allowed = list(dict.fromkeys([*policy.credential_domains, *allowed]))
    for field, value in (("from", recipients.sender), ("reply_to", recipients.reply_to)):
        if value is None:
            continue
        domain = domain_of(value)
        if domain in allowed:
            continue
        address = email.utils.parseaddr(value)[1]
        if via_platform and not allowed:
            detail = (
                f"{field}: {address!r}: through the platform's providers a tenant key may use "
                f"{field} only at a domain an admin allowed, and tenant {tenant!r} has none: "
                f"omit {field}, or ask an admin to add your domain to sender_domains "
                f"(PUT {_settings_url(tenant)}), or store a credential for this provider "
                f"(PUT /api/v1/tenants/{tenant}/credentials/<provider>)"
            )
        else:
            which = (
                "the sender_domains an admin set (through the platform's providers a "
                "credential's from_email does not count)"
                if via_platform
                else "its credentials' from_email domains and the sender_domains an admin set"
            )
            detail = (
                f"{field}: {address!r} is not at a domain tenant {tenant!r} may send from; "
                f"allowed ({which}; exact match, subdomains are not included): "
                f"{', '.join(allowed)}. Use one of those or omit {field}; an admin adds a "
                f"domain with PUT {_settings_url(tenant)}"
            )
        metrics.sends_refused.labels("sender_not_allowed").inc()
        logger.warning("tenant %s refused: %s at %s is not its domain", tenant, field, domain)
        raise Forbidden(detail, code="sender_not_allowed")


def choose_route(
    deps: Deps,
    request: EmailRequest,
    recipients: Recipients,
    policy: SenderPolicy | None,
    *,
    tenant_key: bool,
) -> tuple[list[EmailProvider], str, bool]:
    """The failover order, the sender, and whether the platform's account may send it.

    An explicit ``provider`` alone; else a tenant's own credentials (by priority, then the
    newest; the first one's from_email is the default sender); else the platform's
    EMAIL_PROVIDERS (or EMAIL_PROVIDER) that are configured, with EMAIL_FROM as the default
    sender. A tenant-key send routed to its own credentials is never sent through the
    platform's account (the third value), even if the credential is deleted meanwhile.

    A tenant key (``tenant_key``; an admin key acting for a tenant is not restricted) sends
    through the platform's providers only when its tenant's platform_fallback is on, and
    only from the tenant's own domains (``check_sender``)."""
    if request.provider == "dev" and not deps.settings.is_dev:
        raise Unprocessable(
            "provider 'dev' (local SMTP, no TLS) is not available when MIMIC_ENV=production; "
            "name smtp, resend or postmark, or omit provider",
            code="provider_not_configured",
        )
    own = policy.credentials(request.provider) if policy is not None else []
    if own:
        if tenant_key:
            assert policy is not None
            check_sender(recipients, policy, via_platform=False)
        sender = recipients.sender or own[0][1]
        return [provider for provider, _ in own], sender, not tenant_key
    if tenant_key:
        assert policy is not None, "a tenant key always acts for its tenant"
        if not policy.platform_fallback:
            tenant = policy.tenant_id
            which = f"provider {request.provider!r}" if request.provider else "any provider"
            metrics.sends_refused.labels("platform_fallback_not_allowed").inc()
            logger.warning("tenant %s refused: no credential and no platform fallback", tenant)
            raise Forbidden(
                f"tenant {tenant!r} has no credential for {which} and may not send through "
                f"the platform's providers: store a credential (PUT /api/v1/tenants/{tenant}"
                "/credentials/<provider>), or ask an admin to turn platform_fallback on "
                f"(PUT {_settings_url(tenant)})",
                code="platform_fallback_not_allowed",
            )
        check_sender(recipients, policy, via_platform=True)
    return _platform_order(deps, request), recipients.sender or deps.settings.email.sender, True


async def policies_for(deps: Deps, requests: Sequence[EmailRequest]) -> dict[str, SenderPolicy]:
    """The sender policies of every tenant the requests name, in one query."""
    tenants = {
        r.tenant_id for r in requests if r.tenant_id is not None and TENANT_ID.match(r.tenant_id)
    }
    return await sender_policies(deps.db, tenants, dev=deps.settings.is_dev)


#: What checking one message ends in: the earlier answer for a replayed key, a notification
#: ready to store, or the 4xx it deserves.
Prepared = Accepted | status.NewNotification | MimicError


def _replayed(request: EmailRequest, earlier: IdempotencyRecord) -> Accepted:
    """The original answer for a reused Idempotency-Key; 409 if the body differs."""
    if earlier.request_hash != request.fingerprint():
        raise Conflict(
            "this Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    return Accepted(id=earlier.id, status="queued")


async def prepare(
    deps: Deps,
    templates: Templates,
    items: Sequence[tuple[EmailRequest, str | None]],
    *,
    tenant_key: bool,
    refused: Mapping[int, MimicError] | None = None,
) -> tuple[list[Prepared], dict[str, SenderPolicy]]:
    """Everything short of storing, for every message (``refused``: those already refused,
    by index), and the sender policies read. Each message goes through the same checks in
    the same order as if it were alone, and its answer is its first failure; the reads are
    made once for all of them: one query for the reused Idempotency-Keys, one for the sender
    policies, one for the suppressed recipients (a batch of 100 costs what one message does).
    """
    done: dict[int, Prepared] = dict(refused or {})

    def waiting() -> list[int]:
        return [i for i in range(len(items)) if i not in done]

    for index in waiting():
        tenant = items[index][0].tenant_id
        try:
            if tenant is not None:
                check_tenant(tenant)
        except MimicError as exc:
            done[index] = exc
    # Before rendering: a replay answers as the first time did, even if a template or
    # credential has changed since.
    keyed = [(i, items[i][0], key) for i in waiting() if (key := items[i][1]) is not None]
    earlier = await repository.by_idempotency_keys(
        deps.db, [(request.tenant_id, key) for _, request, key in keyed]
    )
    for index, request, key in keyed:
        record = earlier.get((request.tenant_id or "", key))
        try:
            if record is not None:
                done[index] = _replayed(request, record)
        except MimicError as exc:
            done[index] = exc
    recipients: dict[int, Recipients] = {}
    for index in waiting():
        request = items[index][0]
        try:
            recipients[index] = check_recipients(request)
            check_tags(request.tags)
        except MimicError as exc:
            done[index] = exc
    policies = await policies_for(deps, [items[i][0] for i in waiting()])
    routes: dict[int, tuple[list[EmailProvider], str, bool]] = {}
    for index in waiting():
        request = items[index][0]
        policy = policies.get(request.tenant_id) if request.tenant_id is not None else None
        try:
            routes[index] = choose_route(
                deps, request, recipients[index], policy, tenant_key=tenant_key
            )
        except MimicError as exc:
            done[index] = exc
    pending = waiting()
    suppressed = await suppression.suppressed_among(
        deps.db,
        [
            (items[i][0].tenant_id, [*recipients[i].to, *recipients[i].cc, *recipients[i].bcc])
            for i in pending
        ],
    )
    for index, found in zip(pending, suppressed, strict=True):
        request, key = items[index]
        providers, sender, platform_allowed = routes[index]
        try:
            suppression.refuse_suppressed(found)
            rendered = templates.render(request.template, request.data, request.locale)
        except MimicError as exc:
            done[index] = exc
            continue
        done[index] = status.NewNotification(
            request=request,
            recipients=recipients[index],
            rendered=rendered,
            sender=sender,
            provider=providers[0],
            providers=providers,
            idempotency_key=key,
            platform_allowed=platform_allowed,
        )
    return [done[i] for i in range(len(items))], policies


async def _count(
    deps: Deps, new: Sequence[status.NewNotification], policies: Mapping[str, SenderPolicy]
) -> list[quota.Counted]:
    """Count new sends against their tenants' daily quotas (429 quota_exceeded, nothing
    counted, when one would go over). No query for tenants without a quota."""
    wanted: dict[str, tuple[int, int]] = {}
    for item in new:
        tenant = item.request.tenant_id
        policy = policies.get(tenant) if tenant is not None else None
        if tenant is None or policy is None or policy.daily_send_quota is None:
            continue
        wanted[tenant] = (wanted.get(tenant, (0, 0))[0] + 1, policy.daily_send_quota)
    return await quota.take(deps.db, wanted)


async def _replay_lost(
    deps: Deps, lost: Sequence[tuple[EmailRequest, str | None]]
) -> list[Accepted]:
    """The answers for sends whose Idempotency-Key a concurrent request stored first."""
    pairs = [(request.tenant_id, key) for request, key in lost if key is not None]
    earlier = await repository.by_idempotency_keys(deps.db, pairs)
    answers = []
    for request, key in lost:
        assert key is not None, "only a send with a key can lose it to another"
        answers.append(_replayed(request, earlier[(request.tenant_id or "", key)]))
    return answers


async def submit(
    deps: Deps,
    templates: Templates,
    request: EmailRequest,
    idempotency_key: str | None,
    *,
    tenant_key: bool,
) -> tuple[Accepted, bool]:
    """Render, store and queue one email. Returns the answer and whether it is a replay.
    ``tenant_key``: the caller is a tenant key (the sender rule applies).

    Stored through the group commit (``core.batching``): sends that arrive while a commit is
    in flight are stored together and share one ``send_emails`` job."""
    (prepared,), policies = await prepare(
        deps, templates, [(request, idempotency_key)], tenant_key=tenant_key
    )
    if isinstance(prepared, MimicError):
        raise prepared
    if isinstance(prepared, Accepted):
        return prepared, True
    counted = await _count(deps, [prepared], policies)
    try:
        notification_id = await _sends(deps).submit(prepared)
    except BaseException:
        await quota.give_back(deps.db, counted)
        raise
    if notification_id is None:
        # A concurrent request with the same key committed first.
        await quota.give_back(deps.db, counted)
        (earlier,) = await _replay_lost(deps, [(request, idempotency_key)])
        return earlier, True
    return Accepted(id=notification_id, status="queued"), False


#: The send group commit's name (labels mimic_group_commit_size).
WRITER = "emails"


def _sends(deps: Deps) -> GroupCommit[status.NewNotification, uuid.UUID | None]:
    db = deps.db

    async def store(batch: Sequence[status.NewNotification]) -> list[uuid.UUID | None]:
        return await status.create_many(db, list(batch))

    return group_commit(db, WRITER, store)


class BatchRefused(MimicError):
    """A message of the batch is invalid; nothing was stored."""

    def __init__(self, failures: list[tuple[int, MimicError]]) -> None:
        first = failures[0][1]
        super().__init__(
            "; ".join(f"messages[{i}]: {exc.code}: {exc.message}" for i, exc in failures)
            + " (nothing was stored)",
            code=first.code,
        )
        self.status_code = first.status_code


async def submit_many(
    deps: Deps,
    templates: Templates,
    items: list[tuple[EmailRequest, str | None]],
    *,
    tenant_key: bool,
) -> list[tuple[Accepted, bool]]:
    """Validate every message first, then store and queue them all in one transaction (and
    one job). One invalid message refuses the batch (BatchRefused names each, with its
    index); so does a tenant's daily quota, for the batch as a whole (429 quota_exceeded).
    A few queries check all the messages (see ``prepare``)."""
    repeated: dict[int, MimicError] = {}
    seen: set[tuple[str | None, str]] = set()
    for index, (request, key) in enumerate(items):
        if key is None:
            continue
        if (request.tenant_id, key) in seen:
            repeated[index] = Unprocessable(
                "idempotency_key repeats an earlier message of this batch",
                code="duplicate_idempotency_key",
            )
        seen.add((request.tenant_id, key))
    prepared, policies = await prepare(
        deps, templates, items, tenant_key=tenant_key, refused=repeated
    )
    failures = [(i, p) for i, p in enumerate(prepared) if isinstance(p, MimicError)]
    if failures:
        raise BatchRefused(failures)
    new = [p for p in prepared if isinstance(p, status.NewNotification)]
    counted = await _count(deps, new, policies)
    try:
        created = await status.create_many(deps.db, new) if new else []
    except BaseException:
        await quota.give_back(deps.db, counted)
        raise
    lost = [n for n, notification_id in zip(new, created, strict=True) if notification_id is None]
    replays: Iterator[Accepted] = iter(())
    if lost:
        # Concurrent requests with the same keys committed first.
        await quota.give_back(deps.db, counted, Counter(n.request.tenant_id or "" for n in lost))
        replays = iter(await _replay_lost(deps, [(n.request, n.idempotency_key) for n in lost]))
    ids = iter(created)
    answers: list[tuple[Accepted, bool]] = []
    for item in prepared:
        if isinstance(item, Accepted):
            answers.append((item, True))
            continue
        notification_id = next(ids)
        if notification_id is None:
            answers.append((next(replays), True))
        else:
            answers.append((Accepted(id=notification_id, status="queued"), False))
    return answers
