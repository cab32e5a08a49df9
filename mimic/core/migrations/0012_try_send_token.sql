-- A token of a shared send-rate bucket, taken only if its turn is near: returns the seconds
-- until the turn; at most `within` means the token was taken (the caller waits that long),
-- more means nothing was taken (the caller comes back later). A shared bucket (the platform's
-- credential, used by every tenant) must not be booked far ahead by one tenant's batch: each
-- tenant books its own turns in a bucket of its own, and meets the others here only when its
-- turn is due.
CREATE FUNCTION mimic_try_send_token(
    bucket text, capacity float8, rate float8, within float8
) RETURNS float8
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    at_now timestamptz := clock_timestamp();
    balance float8;
    last timestamptz;
    wait float8;
BEGIN
    INSERT INTO send_rate_buckets (key, tokens, updated_at)
    VALUES (bucket, capacity, at_now)
    ON CONFLICT (key) DO NOTHING;
    SELECT tokens, updated_at INTO balance, last
      FROM send_rate_buckets WHERE key = bucket FOR UPDATE;
    balance := least(capacity, balance + rate * greatest(0, extract(epoch FROM at_now - last)));
    wait := greatest(0, (1 - balance) / rate);
    IF wait <= within THEN
        UPDATE send_rate_buckets SET tokens = balance - 1, updated_at = at_now
         WHERE key = bucket;
    END IF;
    RETURN wait;
END
$$;
