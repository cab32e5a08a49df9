-- Egress: rendered notifications, their timeline, and tenants' encrypted provider keys.

CREATE TABLE notifications (
    id uuid PRIMARY KEY,
    tenant_id text,
    template text NOT NULL,
    locale text,
    "to" text[] NOT NULL,
    cc text[] NOT NULL DEFAULT '{}',
    bcc text[] NOT NULL DEFAULT '{}',
    reply_to text,
    "from" text NOT NULL,
    subject text NOT NULL,
    html text NOT NULL,
    text text NOT NULL,
    tags jsonb NOT NULL DEFAULT '{}',
    provider text NOT NULL CHECK (provider IN ('dev', 'smtp', 'resend', 'postmark')),
    provider_message_id text,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'bounced',
                          'complained', 'failed')),
    idempotency_key text,
    request_hash text,
    error text,
    attempts integer NOT NULL DEFAULT 0,
    send_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz
);

-- Idempotency-Key is scoped to the tenant (NULL tenant = the platform).
CREATE UNIQUE INDEX notifications_idempotency_key
    ON notifications ((coalesce(tenant_id, '')), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Keyset pagination, newest first, with the list filters.
CREATE INDEX notifications_created_idx ON notifications (created_at DESC, id DESC);
CREATE INDEX notifications_tenant_created_idx
    ON notifications (tenant_id, created_at DESC, id DESC);
CREATE INDEX notifications_status_created_idx
    ON notifications (status, created_at DESC, id DESC);
CREATE INDEX notifications_to_idx ON notifications USING gin ("to");
-- Provider webhooks find their notification by the provider's message id.
CREATE UNIQUE INDEX notifications_provider_message_idx
    ON notifications (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

CREATE TABLE notification_events (
    id bigserial PRIMARY KEY,
    notification_id uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    status text NOT NULL,
    detail text,
    provider_event_id text,
    occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_events_notification_idx
    ON notification_events (notification_id, occurred_at, id);
-- A provider event recorded once, however often its webhook is retried.
CREATE UNIQUE INDEX notification_events_provider_event_idx
    ON notification_events (notification_id, provider_event_id)
    WHERE provider_event_id IS NOT NULL;

CREATE TABLE provider_credentials (
    tenant_id text NOT NULL,
    provider text NOT NULL CHECK (provider IN ('smtp', 'resend', 'postmark')),
    key_id text NOT NULL,
    nonce bytea NOT NULL,
    ciphertext bytea NOT NULL,
    from_email text NOT NULL,
    last4 text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider)
);
