"""The auth domain: credentials, tokens, sessions, throttling and the audit trail."""
