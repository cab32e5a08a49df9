-- name: insert_notification
-- Store a rendered notification; nothing when the tenant's Idempotency-Key is taken.
INSERT INTO notifications (id, tenant_id, template, locale, "to", cc, bcc, reply_to, "from",
                           subject, html, text, tags, provider, idempotency_key,
                           request_hash, send_at, providers, platform_allowed)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16, $17, $18,
        $19)
ON CONFLICT ((coalesce(tenant_id, '')), idempotency_key) WHERE idempotency_key IS NOT NULL
DO NOTHING
RETURNING id

-- name: add_recipients
-- Index a new notification by each of its recipients.
INSERT INTO notification_recipients (address, created_at, notification_id)
SELECT DISTINCT r.address, n.created_at, n.id FROM notifications n, unnest(n."to") AS r(address)
 WHERE n.id = $1

-- name: purge_bodies
-- Drop the rendered bodies of finished notifications older than the retention (a batch).
UPDATE notifications SET html = '', text = '', body_purged_at = now()
 WHERE id IN (SELECT id FROM notifications
               WHERE created_at < now() - make_interval(days => $1)
                 AND body_purged_at IS NULL
                 AND status NOT IN ('queued', 'sending')
               ORDER BY created_at LIMIT $2
                 FOR UPDATE SKIP LOCKED)

-- name: prune_notifications
-- Delete a batch of finished notifications older than the retention (their timeline and
-- recipients go with them).
DELETE FROM notifications
 WHERE id IN (SELECT id FROM notifications
               WHERE created_at < now() - make_interval(days => $1)
                 AND status NOT IN ('queued', 'sending')
               ORDER BY created_at LIMIT $2
                 FOR UPDATE SKIP LOCKED)

-- name: add_timeline
-- Append a status event to a notification's timeline (provider events once each).
INSERT INTO notification_events (notification_id, status, detail, provider_event_id, occurred_at)
VALUES ($1, $2, $3, $4, coalesce($5, now()))
ON CONFLICT (notification_id, provider_event_id) WHERE provider_event_id IS NOT NULL
DO NOTHING
RETURNING id

-- name: get_notification
-- One notification, without its bodies.
SELECT id, tenant_id, template, locale, "to", cc, bcc, reply_to, "from", subject, provider,
       provider_message_id, status, error, attempts, send_at, created_at, updated_at, sent_at
  FROM notifications WHERE id = $1

-- name: get_timeline
-- A notification's status events, oldest first.
SELECT status, detail, occurred_at FROM notification_events
 WHERE notification_id = $1 ORDER BY occurred_at, id

-- name: list_notifications
-- Keyset page, newest first: ($4, $5) is the (created_at, id) of the previous page's last row.
SELECT id, tenant_id, template, "to", subject, provider, provider_message_id, status, error,
       attempts, created_at, updated_at, sent_at
  FROM notifications
 WHERE ($1::text IS NULL OR tenant_id = $1)
   AND ($2::text IS NULL OR status = $2)
   AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
 ORDER BY created_at DESC, id DESC
 LIMIT $3

-- name: list_notifications_to
-- The same page for one recipient, walking notification_recipients in order.
SELECT n.id, n.tenant_id, n.template, n."to", n.subject, n.provider, n.provider_message_id,
       n.status, n.error, n.attempts, n.created_at, n.updated_at, n.sent_at
  FROM notification_recipients r
  JOIN notifications n ON n.id = r.notification_id
 WHERE r.address = $3
   AND ($1::text IS NULL OR n.tenant_id = $1)
   AND ($2::text IS NULL OR n.status = $2)
   AND ($5::timestamptz IS NULL OR (r.created_at, r.notification_id) < ($5, $6::uuid))
 ORDER BY r.created_at DESC, r.notification_id DESC
 LIMIT $4

-- name: claim_sends
-- Start send attempts (several at once, one per ($1, $2) pair): what to send, and each
-- attempt's number, with its timeline line (one statement, one round trip). A notification
-- is claimed only by the job that owns its send ($2); claimed_by says which pair claimed it
-- (a row asked for by two pairs is updated once).
WITH claimed AS (
    -- Reclaiming a row still 'sending' (its worker died or was stopped mid-call): that call
    -- may have been sent, so only its provider may be asked again (SET sees the old status).
    UPDATE notifications n
       SET status = 'sending', attempts = n.attempts + 1, updated_at = now(),
           provider_pinned = n.provider_pinned OR n.status = 'sending'
      FROM unnest($1::uuid[], $2::bigint[]) AS c(id, job)
     WHERE n.id = c.id AND n.status IN ('queued', 'sending', 'failed')
       AND (n.job_id IS NULL OR n.job_id = c.job)
    RETURNING n.id, c.job AS claimed_by, n.tenant_id, n."to", n.cc, n.bcc, n.reply_to, n."from",
              n.subject, n.html, n.text, n.tags::text AS tags, n.provider, n.attempts,
              coalesce(n.providers, ARRAY[n.provider]) AS providers, n.provider_pinned,
              n.platform_allowed
), noted AS (
    INSERT INTO notification_events (notification_id, status, detail)
    SELECT id, 'sending', format('attempt %s via %s', attempts, provider) FROM claimed
)
SELECT * FROM claimed

-- name: set_jobs
-- Which job owns each notification's next send.
UPDATE notifications n SET job_id = j.job
  FROM unnest($1::uuid[], $2::bigint[]) AS j(id, job)
 WHERE n.id = j.id

-- name: mark_sent
-- Providers accepted messages (one per row of the arrays: id, message id, provider,
-- detail): status and timeline in one statement. Nothing for a row a provider event has
-- moved on already.
WITH sent AS (
    UPDATE notifications n
       SET status = 'sent', provider_message_id = s.message_id, sent_at = now(), error = NULL,
           provider = s.provider, provider_pinned = false, updated_at = now()
      FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
           AS s(id, message_id, provider, detail)
     WHERE n.id = s.id AND n.status = 'sending'
    RETURNING n.id, s.detail
)
INSERT INTO notification_events (notification_id, status, detail)
SELECT id, 'sent', detail FROM sent

-- name: mark_unsent
-- The attempt failed: back to queued (to retry) or failed for good.
UPDATE notifications
   SET status = $2, error = $3, provider = coalesce($4, provider),
       provider_pinned = CASE WHEN $2 = 'failed' THEN provider_pinned ELSE $5 END,
       -- Released ($6): owned by no job (0 is no job's id), so none sends it again.
       job_id = CASE WHEN $6 THEN 0 ELSE job_id END,
       updated_at = now()
 WHERE id = $1 AND status = 'sending'

-- name: pin_provider
-- A failover is about to ask another provider: a retry after a crash asks it alone.
UPDATE notifications SET provider = $2, provider_pinned = true, updated_at = now()
 WHERE id = $1 AND status = 'sending'

-- name: get_status
-- Current status of one notification.
SELECT status FROM notifications WHERE id = $1

-- name: find_by_provider_message
-- The notification a provider's message id belongs to.
SELECT id, status, tenant_id, "to" FROM notifications
 WHERE provider = $1 AND provider_message_id = $2

-- name: advance_status
-- Move a notification forward (never back) after a provider event.
UPDATE notifications SET status = $2, error = coalesce($3, error), updated_at = now()
 WHERE id = $1

-- name: upsert_credential
-- Store (or replace) a tenant's encrypted provider credential.
INSERT INTO provider_credentials (tenant_id, provider, key_id, nonce, ciphertext, from_email,
                                  last4, rate_per_second, priority)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (tenant_id, provider) DO UPDATE
   SET key_id = excluded.key_id, nonce = excluded.nonce, ciphertext = excluded.ciphertext,
       from_email = excluded.from_email, last4 = excluded.last4,
       rate_per_second = excluded.rate_per_second, priority = excluded.priority,
       updated_at = now()
RETURNING tenant_id, provider, from_email, last4, rate_per_second, priority, created_at,
          updated_at

-- name: get_credential_public
-- What may be shown of a credential: never the key.
SELECT tenant_id, provider, from_email, last4, rate_per_second, priority, created_at,
       updated_at
  FROM provider_credentials WHERE tenant_id = $1 AND provider = $2

-- name: get_credential_sealed
-- A credential with its ciphertext, for sending.
SELECT provider, key_id, nonce, ciphertext, from_email, rate_per_second
  FROM provider_credentials WHERE tenant_id = $1 AND provider = $2

-- name: delete_credential
-- Remove a tenant's credential.
DELETE FROM provider_credentials WHERE tenant_id = $1 AND provider = $2 RETURNING provider

-- name: credentials_to_rotate
-- Credentials sealed with another key than the current one.
SELECT tenant_id, provider, key_id, nonce, ciphertext FROM provider_credentials
 WHERE key_id <> $1 FOR UPDATE

-- name: reseal_credential
-- Replace a credential's ciphertext after rotation (updated_at is the tenant's, not ours).
UPDATE provider_credentials SET key_id = $3, nonce = $4, ciphertext = $5
 WHERE tenant_id = $1 AND provider = $2

-- name: lock_notification
-- Serialise provider events for one notification; returns its status.
SELECT status FROM notifications WHERE id = $1 FOR UPDATE

-- name: unclaim_send
-- A claimed send that waits for its send-rate turn: back to queued, its attempt not counted.
UPDATE notifications SET status = 'queued', attempts = attempts - 1, updated_at = now()
 WHERE id = $1 AND status = 'sending'

-- name: owned_sends
-- Of notifications $1, those job $2 still owns and has yet to send (locked to hand over).
SELECT id FROM notifications
 WHERE id = ANY($1::uuid[]) AND job_id = $2 AND status IN ('queued', 'sending', 'failed')
 ORDER BY id
   FOR UPDATE

-- name: add_suppressions
-- Suppress addresses $2 for tenant $1 (a complaint is never replaced); those added or changed.
INSERT INTO suppressions AS s (tenant, address, reason, provider, notification_id, detail)
SELECT $1, a, $3, $4, $5, $6 FROM unnest($2::text[]) AS a
ON CONFLICT (tenant, address) DO UPDATE
   SET reason = EXCLUDED.reason, provider = EXCLUDED.provider,
       notification_id = EXCLUDED.notification_id, detail = EXCLUDED.detail
 WHERE s.reason <> 'complaint' AND s.reason <> EXCLUDED.reason
RETURNING address

-- name: lock_suppression
-- One suppressed address of a tenant, locked to be removed.
SELECT nullif(tenant, '') AS tenant_id, address AS email, reason, provider,
       notification_id, detail, created_at
  FROM suppressions WHERE tenant = $1 AND address = $2 FOR UPDATE

-- name: delete_suppression
-- Take an address off a tenant's suppression list.
DELETE FROM suppressions WHERE tenant = $1 AND address = $2

-- name: list_suppressions
-- Keyset page of a tenant's list, newest first ($2: one address or all; ($4, $5) is the
-- (created_at, address) of the previous page's last row).
SELECT nullif(tenant, '') AS tenant_id, address AS email, reason, provider,
       notification_id, detail, created_at
  FROM suppressions
 WHERE tenant = $1 AND ($2::text IS NULL OR address = $2)
   AND ($4::timestamptz IS NULL OR (created_at, address) < ($4, $5::text))
 ORDER BY created_at DESC, address DESC
 LIMIT $3

-- name: get_tenant_settings
-- What an admin set for a tenant (no row: the defaults).
SELECT tenant_id, sender_domains, platform_fallback, daily_send_quota, created_at, updated_at
  FROM tenant_settings WHERE tenant_id = $1

-- name: lock_tenant_settings
-- A tenant's stored settings, locked to be replaced (for the audit log's "before").
SELECT sender_domains, platform_fallback, daily_send_quota FROM tenant_settings
 WHERE tenant_id = $1 FOR UPDATE

-- name: put_tenant_settings
-- Store (or replace) a tenant's settings.
INSERT INTO tenant_settings (tenant_id, sender_domains, platform_fallback, daily_send_quota)
VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id) DO UPDATE
   SET sender_domains = excluded.sender_domains,
       platform_fallback = excluded.platform_fallback,
       daily_send_quota = excluded.daily_send_quota, updated_at = now()
RETURNING tenant_id, sender_domains, platform_fallback, daily_send_quota, created_at, updated_at

-- name: sender_policies
-- For tenants $1 (one round trip for a whole batch): their settings (NULL: none stored) and
-- their credentials' providers and from_email, in failover order (priority, newest first).
SELECT t.tenant_id, s.sender_domains, s.platform_fallback, s.daily_send_quota,
       coalesce(c.providers, '{}') AS providers, coalesce(c.from_emails, '{}') AS from_emails
  FROM unnest($1::text[]) AS t(tenant_id)
  LEFT JOIN tenant_settings s ON s.tenant_id = t.tenant_id
  LEFT JOIN LATERAL (
      SELECT array_agg(p.provider ORDER BY p.priority, p.updated_at DESC, p.provider)
                 AS providers,
             array_agg(p.from_email ORDER BY p.priority, p.updated_at DESC, p.provider)
                 AS from_emails
        FROM provider_credentials p WHERE p.tenant_id = t.tenant_id
  ) c ON true

-- name: find_by_idempotency_keys
-- The notifications these Idempotency-Keys already produced: pairs ($1[i] tenant, '' for
-- the platform; $2[i] key), one round trip for a whole batch.
SELECT k.tenant, k.key, n.id, n.request_hash
  FROM unnest($1::text[], $2::text[]) AS k(tenant, key)
  JOIN notifications n
    ON coalesce(n.tenant_id, '') = k.tenant AND n.idempotency_key = k.key
   AND n.idempotency_key IS NOT NULL

-- name: suppressed_pairs
-- Which pairs ($1[i] tenant, '' for the platform; $2[i] normalized address, each pair once)
-- are suppressed, in address order: every recipient of a batch in one round trip.
SELECT s.tenant, s.address
  FROM unnest($1::text[], $2::text[]) AS w(tenant, address)
  JOIN suppressions s ON s.tenant = w.tenant AND s.address = w.address
 ORDER BY s.tenant, s.address

-- name: count_daily_sends
-- Count $2 more sends of tenant $1 today (UTC) only if that keeps it within its quota $3;
-- the day counted, or nothing when it would exceed the quota (nothing is counted then).
INSERT INTO tenant_daily_sends AS d (tenant_id, day, sends)
SELECT $1::text, (now() AT TIME ZONE 'UTC')::date, $2::int WHERE $2::int <= $3::int
ON CONFLICT (tenant_id, day) DO UPDATE SET sends = d.sends + excluded.sends
 WHERE d.sends + excluded.sends <= $3::int
RETURNING day

-- name: uncount_daily_sends
-- Give back $3 sends of tenant $1 counted on day $2 (they were not stored after all).
UPDATE tenant_daily_sends SET sends = greatest(0, sends - $3) WHERE tenant_id = $1 AND day = $2

-- name: daily_sends_today
-- Tenant $1's sends counted today (UTC), and the seconds until the count starts over.
SELECT coalesce(d.sends, 0) AS sends,
       extract(epoch FROM (t.day + 1) - (now() AT TIME ZONE 'UTC'))::float8 AS resets_in
  FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS day) AS t
  LEFT JOIN tenant_daily_sends d ON d.tenant_id = $1 AND d.day = t.day

-- name: recount_daily_sends
-- A quota is being set: today's count of tenant $1 becomes at least the notifications it has
-- had accepted today (sends accepted while it had no quota were not counted).
INSERT INTO tenant_daily_sends AS d (tenant_id, day, sends)
SELECT $1, (now() AT TIME ZONE 'UTC')::date, count(*) FROM notifications
 WHERE tenant_id = $1
   AND created_at >= ((now() AT TIME ZONE 'UTC')::date)::timestamp AT TIME ZONE 'UTC'
ON CONFLICT (tenant_id, day) DO UPDATE SET sends = greatest(d.sends, excluded.sends)

-- name: get_notification_body
-- A notification's rendered bodies (the console shows them; NULL once purged).
SELECT html, text, body_purged_at FROM notifications WHERE id = $1
