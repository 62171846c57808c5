"""The guard domain: every check of a secret is throttled, audited and counted by one mechanism."""
