"""SQL for refresh tokens and the per-request user check: the auth domain's statements."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Enum, delete, func, insert, literal, or_, select, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, make_transient_to_detached

from userapi.auth.models import AccountToken, RefreshToken
from userapi.db.reads import ReadPool
from userapi.roles.constants import effective_permissions
from userapi.users.models import User


def _user_columns() -> tuple[str, dict[str, type[enum.Enum]]]:
    """The select list of every mapped column of User, and the enum class of each enum column.

    Built from the model, so a column added to users cannot be forgotten here (a test checks
    the loaded user has no unloaded attribute). Enum columns are read as text: asyncpg would
    otherwise introspect the custom type on each new connection, a round trip on the hot path.
    """
    select_list, enums = [], {}
    for attribute in sa_inspect(User).column_attrs:
        column = attribute.columns[0]
        if isinstance(column.type, Enum) and column.type.enum_class is not None:
            select_list.append(f"u.{column.name}::text AS {attribute.key}")
            enums[attribute.key] = column.type.enum_class
        else:
            select_list.append(f"u.{column.name} AS {attribute.key}")
    return ", ".join(select_list), enums


_USER_SELECT_LIST, _USER_ENUMS = _user_columns()
_USER_MANAGER = sa_inspect(User).class_manager

# One statement, prepared once per connection: the account, what its role grants now (a primary-key
# lookup of a small table: no cache could serve a revoked permission) and whether the token's
# session is live. The inner join cannot lose the user: users.role references roles.name.
USER_FOR_REQUEST = f"""
SELECT {_USER_SELECT_LIST},
       r.all_permissions AS role_all_permissions,
       r.permissions AS role_permissions,
       ($2::uuid IS NULL OR EXISTS (
           SELECT 1 FROM refresh_tokens t WHERE t.family_id = $2::uuid AND t.revoked_at IS NULL
       )) AS live,
       -- The signing key is still unretired: an emergency retire made by any process (the CLI)
       -- refuses its tokens from the next request on, with no extra round trip (primary key).
       ($3::text IS NULL OR EXISTS (
           SELECT 1 FROM signing_keys k
           WHERE k.kid = $3::text AND (k.retires_at IS NULL OR k.retires_at > statement_timestamp())
       )) AS key_live
FROM users u JOIN roles r ON r.name = u.role
WHERE u.id = $1
"""


@dataclass(frozen=True, slots=True)
class RequestUser:
    """What the per-request check reads: the account, its role's permissions, and whether the
    token's session and signing key are still live."""

    user: User
    permissions: frozenset[str]
    session_live: bool
    key_live: bool = True


@dataclass(frozen=True)
class SessionRow:
    family_id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    amr: list[str]


class CurrentUserRepository:
    """The per-request user check: one prepared statement on the read pool (the hot path)."""

    def __init__(self, reads: ReadPool) -> None:
        self.reads = reads

    async def user_for_request(
        self, user_id: uuid.UUID, session_id: uuid.UUID | None, kid: str | None = None
    ) -> RequestUser | None:
        """The user row, its role's permissions, and whether the token's session and signing key
        (`kid`, a stored key's) are still live, in one round trip.

        The user is returned detached: routes that change it attach it to their session first.
        """
        row = await self.reads.fetchrow(USER_FOR_REQUEST, user_id, session_id, kid)
        if row is None:
            return None
        values = dict(row)
        live, key_live = values.pop("live"), values.pop("key_live")
        permissions = effective_permissions(
            values.pop("role_all_permissions"), values.pop("role_permissions")
        )
        for key, enum_class in _USER_ENUMS.items():
            values[key] = enum_class(values[key])
        # Built the way the ORM's loader builds a row's object: the instance made by its class
        # manager, the column values put straight into its dict (no attribute events: `User(**)`
        # fires one per column and cost ~25 µs a request, 5 % of the worker's time), then
        # marked as loaded and detached, so later changes are tracked as updates.
        user = _USER_MANAGER.new_instance()
        user.__dict__.update(values)
        make_transient_to_detached(user)
        return RequestUser(user, permissions, bool(live), bool(key_live))


class AuthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def signing_key_live(self, kid: str) -> bool:
        """Whether the stored signing key `kid` is still unretired (a primary-key lookup)."""
        result = await self.session.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM signing_keys WHERE kid = :kid "
                "AND (retires_at IS NULL OR retires_at > statement_timestamp()))"
            ),
            {"kid": kid},
        )
        return bool(result.scalar())

    async def add_refresh_token(
        self,
        *,
        user_id: uuid.UUID,
        family_id: uuid.UUID,
        token_hash: bytes,
        expires_at: datetime,
        user_agent: str | None,
        ip: str | None,
        amr: list[str],
    ) -> RefreshToken:
        token = RefreshToken(
            user_id=user_id,
            family_id=family_id,
            token_hash=token_hash,
            expires_at=expires_at,
            user_agent=user_agent,
            ip=ip,
            amr=amr,
        )
        self.session.add(token)
        await self.session.flush()
        return token

    async def lock_refresh_token(self, token_hash: bytes) -> RefreshToken | None:
        """The token row, locked: concurrent refreshes of one token are decided one at a time."""
        stmt = select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        return (await self.session.scalars(stmt)).first()

    async def mark_rotated(self, token: RefreshToken, replaced_by: uuid.UUID, at: datetime) -> None:
        token.rotated_at = at
        token.replaced_by = replaced_by
        await self.session.flush()

    async def revoke_family(self, family_id: uuid.UUID) -> int:
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def revoke_user_sessions(self, user_id: uuid.UUID, keep: uuid.UUID | None = None) -> int:
        """Revoke every live refresh token of the user, except those of the family `keep`."""
        stmt = update(RefreshToken).where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        if keep is not None:
            stmt = stmt.where(RefreshToken.family_id != keep)
        result = await self.session.execute(
            stmt.values(revoked_at=func.now()).execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def family_owner(self, family_id: uuid.UUID) -> uuid.UUID | None:
        stmt = select(RefreshToken.user_id).where(RefreshToken.family_id == family_id).limit(1)
        return (await self.session.scalars(stmt)).first()

    async def active_sessions(self, user_id: uuid.UUID) -> list[SessionRow]:
        """One row per family with a live token (not revoked, not rotated away, not expired)."""
        first = aliased(RefreshToken)
        started = (
            select(func.min(first.created_at))
            .where(first.family_id == RefreshToken.family_id)
            .correlate(RefreshToken)
            .scalar_subquery()
        )
        stmt = (
            select(RefreshToken, started)
            .where(
                RefreshToken.user_id == user_id,
                RefreshToken.revoked_at.is_(None),
                RefreshToken.rotated_at.is_(None),
                RefreshToken.expires_at > func.now(),
            )
            .order_by(RefreshToken.created_at.desc())
        )
        sessions: dict[uuid.UUID, SessionRow] = {}
        for token, started_at in await self.session.execute(stmt):
            # Newest live token first: it says where the session is used now.
            sessions.setdefault(
                token.family_id,
                SessionRow(
                    family_id=token.family_id,
                    created_at=started_at,
                    last_used_at=token.created_at,
                    expires_at=token.expires_at,
                    user_agent=token.user_agent,
                    ip=token.ip,
                    amr=list(token.amr),
                ),
            )
        return list(sessions.values())

    async def prune(self, *, revoked_before: datetime, batch_size: int) -> int:
        """Delete one batch of expired or long-revoked tokens; returns how many."""
        doomed = (
            select(RefreshToken.id)
            .where(
                or_(
                    RefreshToken.expires_at < func.now(),
                    RefreshToken.revoked_at < revoked_before,
                )
            )
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
        result = await self.session.execute(
            delete(RefreshToken)
            .where(RefreshToken.id.in_(doomed.scalar_subquery()))
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class AccountTokenRepository:
    """Statements on account_tokens (mailed one-time tokens)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def retire(self, user_id: uuid.UUID, purposes: list[str]) -> int:
        """Revoke the user's live tokens of these purposes; how many."""
        result = await self.session.execute(
            update(AccountToken)
            .where(
                AccountToken.user_id == user_id,
                AccountToken.purpose.in_(purposes),
                AccountToken.used_at.is_(None),
                AccountToken.revoked_at.is_(None),
            )
            .values(revoked_at=func.now())
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def add(self, values: dict[str, object]) -> None:
        await self.session.execute(insert(AccountToken).values(**values))

    async def add_nothing(self, values: dict[str, object]) -> None:
        """The INSERT of `add`, fed by a SELECT that yields no row: the same statement, no token."""
        source = select(*(literal(v).label(k) for k, v in values.items())).where(literal(False))
        await self.session.execute(insert(AccountToken).from_select(list(values), source))

    async def lock(self, token_hash: bytes) -> AccountToken | None:
        """The token row, locked: two uses of one token at once are decided one at a time."""
        stmt = select(AccountToken).where(AccountToken.token_hash == token_hash).with_for_update()
        return (await self.session.scalars(stmt)).first()

    async def mark_used(self, token: AccountToken) -> None:
        await self.session.execute(
            update(AccountToken)
            .where(AccountToken.id == token.id)
            .values(used_at=func.now())
            .execution_options(synchronize_session=False)
        )

    async def prune(self, *, batch_size: int) -> int:
        """Delete one batch of expired tokens (spent or not, they are dead); returns how many."""
        doomed = (
            select(AccountToken.id)
            .where(AccountToken.expires_at < func.now())
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
        result = await self.session.execute(
            delete(AccountToken)
            .where(AccountToken.id.in_(doomed.scalar_subquery()))
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
