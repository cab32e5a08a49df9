-- What an admin allows a tenant (written by mimic/email/tenants.py only): the domains its
-- tenant keys may send from besides those of its own credentials' from_email (IDNA A-labels,
-- lower case, exact match), and whether its sends may go through the platform's providers.
-- No row: the defaults (no extra domain; platform fallback on in dev only, said in code).
CREATE TABLE tenant_settings (
    tenant_id text PRIMARY KEY,
    sender_domains text[] NOT NULL DEFAULT '{}',
    platform_fallback boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
