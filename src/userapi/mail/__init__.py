"""The mail domain: the transactional outbox, its delivery worker, and the message templates."""
