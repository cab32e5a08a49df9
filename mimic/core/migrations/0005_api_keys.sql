-- Tenant-scoped API keys. Admin keys come from MIMIC_API_KEYS; tenant keys live here, created
-- and revoked with `mimic keys`. Only a SHA-256 of the key is kept: the key is shown once.
CREATE TABLE api_keys (
    id text PRIMARY KEY,
    key_hash bytea NOT NULL UNIQUE,
    tenant_id text NOT NULL,
    name text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, created_at);
