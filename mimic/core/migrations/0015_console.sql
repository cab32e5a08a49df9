-- The console's overview counts what arrived in a window of time: suppressions by time alone
-- (their index leads with the tenant; events already have one on received_at).
CREATE INDEX suppressions_created_idx ON suppressions (created_at);
-- The audit log filtered by action or by key, newest first.
CREATE INDEX audit_log_action_at_idx ON audit_log (action, at DESC, id DESC);
CREATE INDEX audit_log_key_at_idx ON audit_log (key_id, at DESC, id DESC);
