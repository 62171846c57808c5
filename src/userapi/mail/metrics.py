"""Prometheus metrics of mail delivery: messages queued, sent, retried, failed; the oldest pending."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MAIL_MESSAGES = Counter(
    "userapi_mail_messages_total",
    "Outbox messages by event: queued (committed), sent, retried (an attempt failed), failed (given up).",
    ["event", "template"],
)
MAIL_PENDING = Gauge(
    "userapi_mail_pending_messages",
    "Messages waiting in the outbox (as last seen by a delivery worker).",
    multiprocess_mode="livemax",
)
MAIL_OLDEST_PENDING_AGE = Gauge(
    "userapi_mail_oldest_pending_age_seconds",
    "Age of the oldest message waiting in the outbox, in seconds (0 when none).",
    multiprocess_mode="livemax",
)
