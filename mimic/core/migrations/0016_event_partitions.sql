-- webhook_events and webhook_deliveries become time-partitioned (declarative range partitions on
-- received_at / created_at, UTC, monthly here; EVENT_PARTITION_INTERVAL applies to partitions
-- created later), so retention drops whole partitions instead of deleting rows. Deduplication
-- moves to webhook_event_keys: a unique (provider, event_id) cannot span partitions.
--
-- An existing installation's rows are copied in this one transaction, under an ACCESS
-- EXCLUSIVE lock on both tables (webhooks wait, or get a 503 and are retried by the provider;
-- the README gives the lock time measured on 1,000,000 events). Nothing is lost: the old
-- tables are dropped only after every row is in its partition.

-- --- partition management: the one definition (mimic/events/partitions.py calls these) -------

-- The partitions of a table with their bounds (NULL bounds: the default partition).
CREATE FUNCTION mimic_partitions(p_parent text)
RETURNS TABLE (name text, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT c.relname::text,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \(''([^'']*)''\)')::timestamptz,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']*)''\)')::timestamptz
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = p_parent::regclass
     ORDER BY 2 NULLS FIRST
$$;

-- One partition [p_from, p_to). Rows the default partition took for that range (when the
-- partitions ahead were not made in time) move into it in the same transaction.
CREATE FUNCTION mimic_add_partition(p_parent text, p_column text, p_from timestamptz,
                                    p_to timestamptz)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_name text := p_parent || '_' || to_char(p_from AT TIME ZONE 'UTC', 'YYYYMMDD');
    v_default text := p_parent || '_default';
    v_stray boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE %I >= %L AND %I < %L)',
                   v_default, p_column, p_from, p_column, p_to) INTO v_stray;
    IF v_stray THEN
        EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', p_parent, v_default);
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                   v_name, p_parent, p_from, p_to);
    IF v_stray THEN
        EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) '
                       'INSERT INTO %I SELECT * FROM moved',
                       v_default, p_column, p_from, p_column, p_to, v_name);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I DEFAULT', p_parent, v_default);
    END IF;
    RETURN v_name;
END
$$;

-- Partitions of p_interval (day, week or month, UTC) after the last one, until p_until is
-- covered (the first one starts at p_from's interval when there is none). Returns their names.
CREATE FUNCTION mimic_ensure_partitions(p_parent text, p_column text, p_interval text,
                                        p_from timestamptz, p_until timestamptz)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    v_start timestamp;
    v_next timestamp;
BEGIN
    IF p_interval NOT IN ('day', 'week', 'month') THEN
        RAISE EXCEPTION 'partition interval must be day, week or month, not %', p_interval;
    END IF;
    SELECT max(upper_bound) AT TIME ZONE 'UTC' INTO v_start FROM mimic_partitions(p_parent);
    v_start := coalesce(v_start, date_trunc(p_interval, p_from AT TIME ZONE 'UTC'));
    WHILE v_start < p_until AT TIME ZONE 'UTC' LOOP
        -- Aligned to the interval (a shorter first one when the interval changed).
        v_next := date_trunc(p_interval, v_start) + ('1 ' || p_interval)::interval;
        RETURN NEXT mimic_add_partition(p_parent, p_column, v_start AT TIME ZONE 'UTC',
                                        v_next AT TIME ZONE 'UTC');
        v_start := v_next;
    END LOOP;
END
$$;

-- Drop one partition unless a row in it is unfinished (p_column IN p_open). The caller sets a
-- short lock_timeout: the parent is locked first, as inserts lock it, for a moment.
CREATE FUNCTION mimic_drop_partition(p_parent text, p_partition text, p_open text[])
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_open boolean;
BEGIN
    EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', p_parent);
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE status = ANY (%L::text[]))',
                   p_partition, p_open) INTO v_open;
    IF v_open THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE %I', p_partition);
    RETURN true;
END
$$;

-- --- the copy -----------------------------------------------------------------------------------

LOCK TABLE webhook_events, webhook_deliveries IN ACCESS EXCLUSIVE MODE;
ALTER TABLE webhook_deliveries RENAME TO webhook_deliveries_unpartitioned;
ALTER TABLE webhook_events RENAME TO webhook_events_unpartitioned;

CREATE TABLE webhook_events (
    id uuid NOT NULL,
    provider text NOT NULL,
    event_type text NOT NULL,
    event_id text NOT NULL,
    payload jsonb NOT NULL,
    raw_body bytea NOT NULL,
    signature text,
    status text NOT NULL DEFAULT 'received',
    received_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    error_message text,
    retry_count integer NOT NULL DEFAULT 0,
    CONSTRAINT webhook_events_status_check
        CHECK (status IN ('received', 'delivered', 'failed', 'ignored'))
) PARTITION BY RANGE (received_at);

-- event_id: the event's id (no foreign key: a key to a partitioned table must hold its
-- partition column; mimic/events is the one writer of both).
CREATE TABLE webhook_deliveries (
    id uuid NOT NULL,
    event_id uuid NOT NULL,
    target_service text NOT NULL,
    task_name text NOT NULL,
    job_id bigint,
    status text NOT NULL DEFAULT 'pending',
    result jsonb,
    attempt_count integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    attempt_open boolean NOT NULL DEFAULT false,
    superseded boolean NOT NULL DEFAULT false,
    route_id uuid,
    path text,
    body text,
    CONSTRAINT webhook_deliveries_status_check
        CHECK (status IN ('pending', 'dispatched', 'success', 'failed', 'paused'))
) PARTITION BY RANGE (created_at);

-- A row outside every partition lands here rather than failing; the maintenance moves such
-- rows into their partition when it creates it.
CREATE TABLE webhook_events_default PARTITION OF webhook_events DEFAULT;
CREATE TABLE webhook_deliveries_default PARTITION OF webhook_deliveries DEFAULT;

-- Monthly partitions from the oldest stored row to three months ahead.
SELECT count(*) FROM mimic_ensure_partitions(
    'webhook_events', 'received_at', 'month',
    coalesce((SELECT min(received_at) FROM webhook_events_unpartitioned), now()),
    now() + interval '3 months');
SELECT count(*) FROM mimic_ensure_partitions(
    'webhook_deliveries', 'created_at', 'month',
    coalesce((SELECT min(created_at) FROM webhook_deliveries_unpartitioned), now()),
    now() + interval '3 months');

INSERT INTO webhook_events
SELECT id, provider, event_type, event_id, payload, raw_body, signature, status, received_at,
       processed_at, error_message, retry_count
  FROM webhook_events_unpartitioned;
INSERT INTO webhook_deliveries
SELECT id, event_id, target_service, task_name, job_id, status, result, attempt_count,
       last_error, created_at, updated_at, completed_at, attempt_open, superseded, route_id,
       path, body
  FROM webhook_deliveries_unpartitioned;

-- Deduplication: (provider, event_id) -> our event, kept EVENT_DEDUP_DAYS (at most 30).
CREATE TABLE webhook_event_keys (
    provider text NOT NULL,
    event_id text NOT NULL,
    id uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);
-- Rows arrive in time order: a BRIN index finds the old ones for a few bytes per page.
CREATE INDEX webhook_event_keys_received_idx ON webhook_event_keys USING brin (received_at);

INSERT INTO webhook_event_keys (provider, event_id, id, received_at)
SELECT provider, event_id, id, received_at FROM webhook_events_unpartitioned
 WHERE received_at > now() - interval '30 days';

DROP TABLE webhook_deliveries_unpartitioned;
DROP TABLE webhook_events_unpartitioned;

-- Keys and indexes after the copy (faster than maintaining them row by row); each partition
-- gets its own, and a partition created later gets them too.
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_pkey PRIMARY KEY (id, received_at);
CREATE INDEX webhook_events_provider_event_idx ON webhook_events (provider, event_id);
CREATE INDEX webhook_events_received_idx ON webhook_events (received_at DESC, id DESC);
CREATE INDEX webhook_events_status_received_idx
    ON webhook_events (status, received_at DESC, id DESC);
CREATE INDEX webhook_events_provider_received_idx
    ON webhook_events (provider, received_at DESC, id DESC);
CREATE INDEX webhook_events_type_received_idx
    ON webhook_events (event_type, received_at DESC, id DESC);

ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (id, created_at);
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_created_idx ON webhook_deliveries (created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_status_created_idx
    ON webhook_deliveries (status, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_target_created_idx
    ON webhook_deliveries (target_service, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_status_idx ON webhook_deliveries (status)
    WHERE status IN ('pending', 'dispatched');
CREATE INDEX webhook_deliveries_paused_idx ON webhook_deliveries (target_service, created_at, id)
    WHERE status = 'paused';
CREATE INDEX webhook_deliveries_unfinished_target_idx ON webhook_deliveries (target_service)
    WHERE status IN ('pending', 'dispatched', 'paused');

ANALYZE webhook_events;
ANALYZE webhook_deliveries;
ANALYZE webhook_event_keys;
