-- Routes are data: destinations (internal services that receive deliveries) and routes (which
-- events go to which destination, with what body). Written by mimic/events/gateway.py only.

CREATE TABLE gateway_destinations (
    name text PRIMARY KEY CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    url text NOT NULL,
    -- Static headers sent with every delivery (not secrets: those go in the sealed api key).
    headers jsonb NOT NULL DEFAULT '{}',
    -- An API key header: its name, and its value sealed (AES-256-GCM, MIMIC_ENCRYPTION_KEYS).
    api_key_header text,
    api_key_key_id text,
    api_key_nonce bytea,
    api_key_ciphertext bytea,
    api_key_last4 text,
    -- Standard Webhooks signing secrets, each sealed: [{id, key_id, nonce, ciphertext,
    -- created_at, expires_at}] (base64 bytes); deliveries are signed with every unexpired one.
    signing_secrets jsonb NOT NULL DEFAULT '[]',
    timeout_seconds float8 NOT NULL DEFAULT 10 CHECK (timeout_seconds > 0),
    max_attempts integer NOT NULL DEFAULT 10 CHECK (max_attempts >= 1),
    backoff_base_seconds float8 NOT NULL DEFAULT 2 CHECK (backoff_base_seconds > 0),
    backoff_max_seconds float8 NOT NULL DEFAULT 3600 CHECK (backoff_max_seconds > 0),
    rate_per_second float8 CHECK (rate_per_second > 0),
    circuit_failures integer NOT NULL DEFAULT 0 CHECK (circuit_failures >= 0),
    circuit_window_seconds float8 NOT NULL DEFAULT 60 CHECK (circuit_window_seconds > 0),
    circuit_cooldown_seconds float8 NOT NULL DEFAULT 30 CHECK (circuit_cooldown_seconds > 0),
    state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'disabled')),
    -- api: the admin API; config: MIMIC_ROUTES_FILE; settings: inkpass (INKPASS_INTERNAL_URL).
    managed_by text NOT NULL DEFAULT 'api' CHECK (managed_by IN ('api', 'config', 'settings')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gateway_routes (
    id uuid PRIMARY KEY,
    name text UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    provider text NOT NULL CHECK (provider IN ('stripe', 'resend', 'postmark')),
    event_types text[] NOT NULL CHECK (cardinality(event_types) > 0),
    filter jsonb NOT NULL DEFAULT '[]',
    destination text NOT NULL REFERENCES gateway_destinations (name),
    path text NOT NULL DEFAULT '',
    body text NOT NULL CHECK (body IN ('inkpass', 'event', 'envelope')),
    task_name text NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    -- default: the seed's inkpass routes; api; config (MIMIC_ROUTES_FILE).
    managed_by text NOT NULL DEFAULT 'api' CHECK (managed_by IN ('api', 'config', 'default')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gateway_routes_destination_idx ON gateway_routes (destination);

-- One number that changes with every change to either table: API processes cache the routes
-- and check this number in the statement that stores a batch of events, so a change applies
-- to the next event every process receives.
CREATE TABLE gateway_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version bigint NOT NULL
);
INSERT INTO gateway_version VALUES (true, 1);

CREATE FUNCTION mimic_bump_gateway_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE gateway_version SET version = version + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER gateway_destinations_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON gateway_destinations
    FOR EACH STATEMENT EXECUTE FUNCTION mimic_bump_gateway_version();
CREATE TRIGGER gateway_routes_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON gateway_routes
    FOR EACH STATEMENT EXECUTE FUNCTION mimic_bump_gateway_version();

-- The seed's routing, as data: inkpass (its URL and key come from INKPASS_INTERNAL_URL and
-- MIMIC_SERVICE_API_KEY; the url column only shows the last value a process started with)
-- and its four routes, under the seed's task names.
INSERT INTO gateway_destinations (name, url, managed_by)
VALUES ('inkpass', 'http://localhost:8002', 'settings');
INSERT INTO gateway_routes (id, name, provider, event_types, destination, path, body, task_name,
                            managed_by)
VALUES
    ('00000000-0000-5000-8000-000000000001', 'inkpass-subscription-created', 'stripe',
     '{checkout.session.completed,customer.subscription.created}', 'inkpass',
     '/internal/billing/subscription-created', 'inkpass',
     'mimic.tasks.route_to_inkpass_subscription_created', 'default'),
    ('00000000-0000-5000-8000-000000000002', 'inkpass-subscription-updated', 'stripe',
     '{customer.subscription.updated}', 'inkpass',
     '/internal/billing/subscription-updated', 'inkpass',
     'mimic.tasks.route_to_inkpass_subscription_updated', 'default'),
    ('00000000-0000-5000-8000-000000000003', 'inkpass-subscription-deleted', 'stripe',
     '{customer.subscription.deleted}', 'inkpass',
     '/internal/billing/subscription-deleted', 'inkpass',
     'mimic.tasks.route_to_inkpass_subscription_deleted', 'default'),
    ('00000000-0000-5000-8000-000000000004', 'inkpass-invoice-event', 'stripe',
     '{invoice.payment_failed,invoice.payment_succeeded,invoice.paid}', 'inkpass',
     '/internal/billing/invoice-event', 'inkpass',
     'mimic.tasks.route_to_inkpass_invoice_event', 'default');

-- Each delivery records the route that made it and what it sends (path and body as they were
-- when the event arrived); NULL for Mimic's own handlers and for deliveries made before this.
-- A delivery to a paused (or disabled) destination waits as 'paused', with no job.
ALTER TABLE webhook_deliveries
    ADD COLUMN route_id uuid,
    ADD COLUMN path text,
    ADD COLUMN body text;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_status_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_status_check
    CHECK (status IN ('pending', 'dispatched', 'success', 'failed', 'paused'));
CREATE INDEX webhook_deliveries_paused_idx ON webhook_deliveries (target_service, created_at, id)
    WHERE status = 'paused';
CREATE INDEX webhook_deliveries_unfinished_target_idx ON webhook_deliveries (target_service)
    WHERE status IN ('pending', 'dispatched', 'paused');

-- Finish several deliveries in one statement: record each outcome, then roll their events up
-- in event order (so two batches finishing at once take the event locks in the same order).
-- Returns the ids recorded (a delivery that had already succeeded is left alone).
CREATE FUNCTION mimic_finish_deliveries(p_ids uuid[], p_statuses text[], p_results jsonb[],
                                        p_errors text[])
RETURNS uuid[] LANGUAGE plpgsql AS $$
DECLARE
    v_done uuid[];
    v_events uuid[];
    v_event uuid;
BEGIN
    WITH input AS (
        SELECT * FROM unnest(p_ids, p_statuses, p_results, p_errors)
                      AS i(id, status, result, error)
    ), locked AS (
        SELECT d.id FROM webhook_deliveries d JOIN input i ON i.id = d.id
         WHERE d.status <> 'success' ORDER BY d.id FOR UPDATE OF d
    ), updated AS (
        UPDATE webhook_deliveries d
           SET status = i.status, result = i.result,
               last_error = coalesce(i.error, d.last_error), attempt_open = false,
               updated_at = now(),
               completed_at = CASE WHEN i.status IN ('success', 'failed') THEN now() END
          FROM input i
         WHERE d.id = i.id AND d.id IN (SELECT id FROM locked)
        RETURNING d.id, d.event_id, d.status
    )
    SELECT array_agg(id), array_agg(DISTINCT event_id)
                          FILTER (WHERE status IN ('success', 'failed'))
      INTO v_done, v_events
      FROM updated;
    FOR v_event IN SELECT e FROM unnest(v_events) AS e WHERE e IS NOT NULL ORDER BY e LOOP
        PERFORM mimic_roll_up_event(v_event);
    END LOOP;
    RETURN coalesce(v_done, '{}');
END
$$;
