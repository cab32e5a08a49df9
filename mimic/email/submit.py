"""Accepting email (the API side): check a request, choose its providers, render it, and
store and queue it (one at a time through the group commit, or a batch at once). An
Idempotency-Key reused with the same body answers as the first time did."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from mimic.core.batching import GroupCommit, group_commit
from mimic.core.deps import Deps
from mimic.core.errors import Conflict, MimicError, Unprocessable
from mimic.core.keys import check_tenant
from mimic.core.settings import EmailProvider
from mimic.email import repository, status, suppression
from mimic.email.addresses import validate_address, validate_addresses
from mimic.email.credentials import tenant_senders
from mimic.email.providers.registry import REGISTRY
from mimic.email.rendering import Templates
from mimic.email.schemas import Accepted, EmailRequest, Recipients

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


async def choose_providers(
    deps: Deps, request: EmailRequest
) -> tuple[list[EmailProvider], str | None]:
    """The failover order and the tenant's sender. An explicit ``provider`` alone; else a
    tenant's own credentials (by priority, then the newest); else the platform's
    EMAIL_PROVIDERS (or EMAIL_PROVIDER) that are configured."""
    if request.tenant_id is not None:
        found = await tenant_senders(deps.db, request.tenant_id, request.provider)
        if found:
            return [f.provider for f in found], found[0].from_email
    wanted = [request.provider] if request.provider else list(deps.settings.email.provider_order)
    order = [p for p in wanted if REGISTRY[p].configured(deps.settings.email)]
    if not order:
        raise Unprocessable(
            f"provider {wanted[0]!r} has no credentials for this tenant or the platform",
            code="provider_not_configured",
        )
    return order, None


async def replay(deps: Deps, request: EmailRequest, key: str) -> Accepted | None:
    """The original answer for a reused Idempotency-Key; 409 if the body differs."""
    earlier = await repository.by_idempotency_key(deps.db, request.tenant_id, key)
    if earlier is None:
        return None
    if earlier.request_hash != request.fingerprint():
        raise Conflict(
            "this Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    return Accepted(id=earlier.id, status="queued")


async def prepare(
    deps: Deps, templates: Templates, request: EmailRequest, idempotency_key: str | None
) -> Accepted | status.NewNotification:
    """Everything short of storing: the earlier answer for a replayed key, or a validated,
    rendered notification. Raises the 4xx the request deserves."""
    if request.tenant_id is not None:
        check_tenant(request.tenant_id)
    if idempotency_key is not None:
        # Before rendering: a replay answers as the first time did, even if a template
        # or credential has changed since.
        earlier = await replay(deps, request, idempotency_key)
        if earlier is not None:
            return earlier
    recipients = check_recipients(request)
    check_tags(request.tags)
    await suppression.refuse_suppressed(
        deps.db, request.tenant_id, [*recipients.to, *recipients.cc, *recipients.bcc]
    )
    rendered = templates.render(request.template, request.data, request.locale)
    providers, tenant_from = await choose_providers(deps, request)
    return status.NewNotification(
        request=request,
        recipients=recipients,
        rendered=rendered,
        sender=recipients.sender or tenant_from or deps.settings.email.sender,
        provider=providers[0],
        providers=providers,
        idempotency_key=idempotency_key,
    )


async def submit(
    deps: Deps, templates: Templates, request: EmailRequest, idempotency_key: str | None
) -> tuple[Accepted, bool]:
    """Render, store and queue one email. Returns the answer and whether it is a replay.

    Stored through the group commit (``core.batching``): sends that arrive while a commit is
    in flight are stored together and share one ``send_emails`` job."""
    prepared = await prepare(deps, templates, request, idempotency_key)
    if isinstance(prepared, Accepted):
        return prepared, True
    notification_id = await _sends(deps).submit(prepared)
    if notification_id is None:
        # A concurrent request with the same key committed first.
        assert idempotency_key is not None
        earlier = await replay(deps, request, idempotency_key)
        assert earlier is not None
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
    deps: Deps, templates: Templates, items: list[tuple[EmailRequest, str | None]]
) -> list[tuple[Accepted, bool]]:
    """Validate every message first, then store and queue them all in one transaction (and
    one job). One invalid message refuses the batch (BatchRefused names each, with its
    index)."""
    prepared: list[Accepted | status.NewNotification] = []
    failures: list[tuple[int, MimicError]] = []
    seen: set[tuple[str | None, str]] = set()
    for index, (request, key) in enumerate(items):
        if key is not None and (request.tenant_id, key) in seen:
            failures.append(
                (
                    index,
                    Unprocessable(
                        "idempotency_key repeats an earlier message of this batch",
                        code="duplicate_idempotency_key",
                    ),
                )
            )
            continue
        if key is not None:
            seen.add((request.tenant_id, key))
        try:
            prepared.append(await prepare(deps, templates, request, key))
        except MimicError as exc:
            failures.append((index, exc))
    if failures:
        raise BatchRefused(failures)
    new = [p for p in prepared if isinstance(p, status.NewNotification)]
    created = iter(await status.create_many(deps.db, new))
    answers: list[tuple[Accepted, bool]] = []
    for (request, key), item in zip(items, prepared, strict=True):
        if isinstance(item, Accepted):
            answers.append((item, True))
            continue
        notification_id = next(created)
        if notification_id is None:
            # A concurrent request with the same key committed first.
            assert key is not None
            earlier = await replay(deps, request, key)
            assert earlier is not None
            answers.append((earlier, True))
        else:
            answers.append((Accepted(id=notification_id, status="queued"), False))
    return answers
