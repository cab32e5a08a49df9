-- An optional daily send quota per tenant (NULL: unlimited), and what it counts: the sends
-- accepted per tenant per UTC day (written by mimic/email/quota.py only). A send takes its
-- count with one conditional statement before it is stored, so concurrent API processes can
-- never count past the quota; a send that is then not stored gives its count back.
ALTER TABLE tenant_settings
    ADD COLUMN daily_send_quota integer CHECK (daily_send_quota >= 0);

CREATE TABLE tenant_daily_sends (
    tenant_id text NOT NULL,
    day date NOT NULL,
    sends integer NOT NULL CHECK (sends >= 0),
    PRIMARY KEY (tenant_id, day)
);
