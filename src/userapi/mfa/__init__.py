"""The mfa domain: TOTP (RFC 6238) enrolment and verification, recovery codes, second-factor sign-in."""
