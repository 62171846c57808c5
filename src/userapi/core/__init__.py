"""Cross-cutting building blocks (settings, errors, security, logging); imports no domain package."""
