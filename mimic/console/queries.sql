-- The console's own reads (its actions go through the domains' services).

-- name: events_by_provider
-- Events received since $1, by provider and status.
SELECT provider, status, count(*) AS n FROM webhook_events
 WHERE received_at >= $1 GROUP BY provider, status ORDER BY provider, status

-- name: events_by_hour
-- Events received and failed per hour since $1.
SELECT date_trunc('hour', received_at) AS hour, count(*) AS received,
       count(*) FILTER (WHERE status = 'failed') AS failed
  FROM webhook_events WHERE received_at >= $1 GROUP BY 1 ORDER BY 1

-- name: deliveries_by_destination
-- Deliveries made since $1, by destination and status (current ones only).
SELECT target_service, status, count(*) AS n FROM webhook_deliveries
 WHERE created_at >= $1 AND NOT superseded GROUP BY target_service, status
 ORDER BY target_service, status

-- name: emails_by_status
-- Notifications created since $1, by status.
SELECT status, count(*) AS n FROM notifications WHERE created_at >= $1
 GROUP BY status ORDER BY status

-- name: suppressed_since
-- Addresses suppressed since $1.
SELECT count(*) FROM suppressions WHERE created_at >= $1

-- name: queues
-- Jobs waiting or running per queue, and the age of the oldest one due.
SELECT queue_name, count(*) FILTER (WHERE status = 'todo') AS waiting,
       count(*) FILTER (WHERE status = 'doing') AS running,
       extract(epoch FROM now() - min(scheduled_at) FILTER (WHERE status = 'todo'))::float8
           AS oldest_scheduled
  FROM procrastinate_jobs WHERE status IN ('todo', 'doing') GROUP BY queue_name
 ORDER BY queue_name

-- name: open_circuits
-- Circuits open now.
SELECT key, open_until, failures, last_error FROM provider_circuits
 WHERE open_until > now() ORDER BY key

-- name: resting_destinations
-- Destinations that are paused or disabled.
SELECT name, state FROM gateway_destinations WHERE state <> 'active' ORDER BY name
