"""The review console in the browser: a durable queue fed from Kafka, leases, decisions
published through an outbox, logins, and the pages (see docs/review.md)."""
