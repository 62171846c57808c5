"""The audit domain: the trail of security events (one record() entry point) and its listing."""
