"""Prometheus counters and histograms, served at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

webhooks_received = Counter(
    "mimic_webhooks_received_total",
    "Webhooks accepted and stored",
    ["provider", "duplicate"],
)
webhooks_rejected = Counter(
    "mimic_webhooks_rejected_total",
    "Webhooks refused before anything was stored",
    ["provider", "reason"],
)
deliveries_finished = Counter(
    "mimic_deliveries_total",
    "Delivery attempts to internal services, by outcome",
    ["target", "outcome"],
)
emails_finished = Counter(
    "mimic_emails_total",
    "Email send attempts, by provider and outcome",
    ["provider", "outcome"],
)
tenant_slot_waits = Counter(
    "mimic_tenant_slot_waits_total",
    "Email jobs handed to a later job because their tenant held its share of the slots",
)
group_commit_size = Histogram(
    "mimic_group_commit_size",
    "Requests stored by one transaction (group commit), by writer (webhooks, emails)",
    ["writer"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
webhook_latency = Histogram(
    "mimic_webhook_handling_seconds",
    "Time to verify, store and enqueue one webhook",
    ["provider"],
)
suppressions_added = Counter(
    "mimic_suppressions_added_total",
    "Addresses added to a suppression list, by reason",
    ["reason"],
)
sends_refused = Counter(
    "mimic_sends_refused_total",
    "Sends refused before anything was stored, by reason",
    ["reason"],
)
provider_skipped = Counter(
    "mimic_email_provider_skipped_total",
    "Email providers passed over for a send: circuit_open, or certain_failure (then the next"
    " provider of the order is tried)",
    ["provider", "reason"],
)
queue_jobs = Gauge(
    "mimic_queue_jobs",
    "Jobs waiting (todo) or running (doing), by queue: read from procrastinate's table at scrape",
    ["queue", "status"],
)
queue_oldest_todo = Gauge(
    "mimic_queue_oldest_todo_seconds",
    "Age of the oldest job waiting to run (due now or earlier), by queue",
    ["queue"],
)
