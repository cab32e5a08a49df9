-- Email that behaves like a grown-up provider: suppression list, provider failover with a
-- shared circuit breaker, and per-credential send rates shared by every worker.

-- An address that bounced hard, complained or is suppressed at the provider is not mailed
-- again by that tenant ('' is the platform). The local part compares exactly, the domain in
-- lower case: `address` is stored that way.
CREATE TABLE suppressions (
    tenant text NOT NULL,
    address text NOT NULL,
    reason text NOT NULL
        CHECK (reason IN ('hard_bounce', 'complaint', 'provider_suppressed',
                          'inactive_recipient', 'manual')),
    provider text,
    notification_id uuid,
    detail text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, address)
);
CREATE INDEX suppressions_tenant_created_idx
    ON suppressions (tenant, created_at DESC, address DESC);

-- One row per provider (and tenant credential): consecutive certain failures, and until when
-- it is skipped. Every worker reads and writes the same rows.
CREATE TABLE provider_circuits (
    key text PRIMARY KEY,
    failures integer NOT NULL DEFAULT 0,
    first_failure_at timestamptz,
    open_until timestamptz,
    last_error text
);

-- A token bucket per provider credential: tokens left, as of updated_at.
CREATE TABLE send_rate_buckets (
    key text PRIMARY KEY,
    tokens double precision NOT NULL,
    updated_at timestamptz NOT NULL
);

-- A tenant credential may set its own send rate and its place in the tenant's order.
ALTER TABLE provider_credentials ADD COLUMN rate_per_second double precision;
ALTER TABLE provider_credentials ADD COLUMN priority integer NOT NULL DEFAULT 0;

-- The providers a send may use, in order (failover), and whether an attempt with an unknown
-- outcome has pinned it to `provider` (then only that provider may be asked again).
ALTER TABLE notifications ADD COLUMN providers text[];
ALTER TABLE notifications ADD COLUMN provider_pinned boolean NOT NULL DEFAULT false;
