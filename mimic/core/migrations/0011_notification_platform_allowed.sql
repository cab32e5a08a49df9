-- Whether a send may go through the platform's own provider account when its tenant has no
-- credential for the provider at send time: true for admin-key sends and tenant sends routed
-- to the platform at accept time; false for a tenant-key send accepted for the tenant's own
-- credential (deleting that credential before the worker runs must not send its From through
-- the platform's account). Existing rows keep today's behaviour. (A constant default: no
-- table rewrite.)
ALTER TABLE notifications ADD COLUMN platform_allowed boolean NOT NULL DEFAULT true;
