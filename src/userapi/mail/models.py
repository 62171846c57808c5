"""The mail_outbox table: each message written in the transaction that caused it, until delivered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from userapi.db.base import Base


class OutboxMessage(Base):
    __tablename__ = "mail_outbox"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
        # The worker's query: due pending messages, oldest first. Partial, so sent mail costs nothing.
        Index(
            "ix_mail_outbox_due",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
    )
    __mapper_args__ = {"eager_defaults": True}

    # Sequential: delivery follows insertion order and `mail status` reads naturally.
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    template: Mapped[str] = mapped_column(String(64), nullable=False)
    recipient: Mapped[str] = mapped_column(String(320), nullable=False)
    # The Message-ID header, fixed at enqueue: a retry re-sends the same message, which lets a
    # receiver recognise a duplicate after a delivery whose success was not recorded.
    message_id: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    # The whole RFC 5322 message. It holds the link (and so the token) until it is delivered,
    # then is erased: a sent or failed message keeps only its metadata.
    content: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
