"""Database plumbing: declarative base, engine and sessions, the embedded development cluster."""
