"""The signing_keys table: one row per key, public JWK in clear, private key sealed (core/crypto.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, LargeBinary, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from userapi.db.base import Base


class SigningKey(Base):
    __tablename__ = "signing_keys"
    __table_args__ = (
        CheckConstraint("algorithm IN ('EdDSA', 'ES256', 'RS256')", name="algorithm"),
        CheckConstraint("retires_at IS NULL OR retires_at >= activates_at", name="retires_after_activation"),
    )

    # RFC 7638 thumbprint of the public key: stable, derived from the key, safe to publish.
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16), nullable=False)
    # The public key as an RFC 7517 JWK (kty, crv/n/e, x, y; kid, alg, use), published as is.
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    # PKCS#8 DER sealed with AES-256-GCM; NULL once the key is retired (the material is destroyed).
    private_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # When it starts signing: creation time plus the publish delay (the first key: at once).
    activates_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # When it stops being published and accepted: set by the rotation that supersedes it (after
    # its last token expired), or to the moment of an emergency retire. NULL: not scheduled.
    retires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # "rotated" or "emergency" once retires_at is set.
    retire_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
