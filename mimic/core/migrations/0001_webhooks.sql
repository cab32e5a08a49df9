-- Ingress: every provider event we accepted, and one delivery per route.

CREATE TABLE webhook_events (
    id uuid PRIMARY KEY,
    provider text NOT NULL,
    event_type text NOT NULL,
    event_id text NOT NULL,
    payload jsonb NOT NULL,
    raw_body bytea NOT NULL,
    signature text,
    status text NOT NULL DEFAULT 'received'
        CHECK (status IN ('received', 'delivered', 'failed', 'ignored')),
    received_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    error_message text,
    retry_count integer NOT NULL DEFAULT 0,
    CONSTRAINT webhook_events_provider_event_id_key UNIQUE (provider, event_id)
);

-- Admin listing: newest first, filtered by provider / status (keyset on received_at, id).
CREATE INDEX webhook_events_received_idx ON webhook_events (received_at DESC, id DESC);
CREATE INDEX webhook_events_status_received_idx
    ON webhook_events (status, received_at DESC, id DESC);

CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    event_id uuid NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    target_service text NOT NULL,
    task_name text NOT NULL,
    job_id bigint,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'dispatched', 'success', 'failed')),
    result jsonb,
    attempt_count integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    CONSTRAINT webhook_deliveries_event_target_key UNIQUE (event_id, target_service, task_name)
);

CREATE INDEX webhook_deliveries_status_idx ON webhook_deliveries (status)
    WHERE status IN ('pending', 'dispatched');
