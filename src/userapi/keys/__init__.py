"""Signing keys: key material, rotation, the JWKS and OpenID discovery documents."""
