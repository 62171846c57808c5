"""Scenario 3, the admin listing at size: seeding, cursors built from SQL, EXPLAIN of the real statement."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from bench._common import PASSWORD, BenchError, expect, log, ratio
from bench._context import Context, sql
from bench._procs import Server
from bench.seed import prefix_matching, seed_users

LIMIT = 100
DEEP_PAGES = 10_000
PAGE_SQL = (
    "SELECT users.id, users.email, users.password_hash, users.full_name, users.role, users.is_active, "
    "users.token_version, users.created_at, users.updated_at FROM users{where} "
    "ORDER BY users.created_at, users.id LIMIT ${n}"
)


def encode_cursor(created_at: datetime, user_id: uuid.UUID) -> str:
    """The API's cursor: base64url (unpadded) of JSON [created_at ISO, id] (users/service.py)."""
    raw = orjson.dumps([created_at.isoformat(), str(user_id)])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


async def row_at(dsn: str, offset: int) -> tuple[datetime, uuid.UUID]:
    """(created_at, id) of the row at `offset` in the listing's order."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT created_at, id FROM users ORDER BY created_at, id OFFSET $1 LIMIT 1", offset
        )
    finally:
        await conn.close()
    if row is None:
        raise ValueError(f"no row at offset {offset}")
    return row["created_at"], uuid.UUID(str(row["id"]))


class _NoRows(list[Any]):
    def all(self) -> list[Any]:
        return []

    def first(self) -> None:
        return None


class _CapturingSession:
    """Stands in for the AsyncSession: records the statement instead of running it."""

    def __init__(self) -> None:
        self.statements: list[Any] = []

    async def scalars(self, statement: Any) -> _NoRows:
        self.statements.append(statement)
        return _NoRows()

    async def execute(self, statement: Any) -> _NoRows:
        return await self.scalars(statement)


def page_statement(
    limit: int, after: tuple[datetime, uuid.UUID] | None, email_prefix: str | None
) -> tuple[str, list[Any], str]:
    """(SQL with $n placeholders, parameters, where it came from) of one listing page.

    Taken from the service's own repository, so the plan explained is the plan of the statement
    the service sends; a handwritten equivalent if the repository's shape changed.
    """
    try:
        from sqlalchemy.dialects.postgresql.asyncpg import dialect

        from userapi.users.repository import UserRepository

        session = _CapturingSession()
        repo = UserRepository(session)  # type: ignore[arg-type]
        asyncio.run(repo.page(limit=limit + 1, after=after, role=None, email_prefix=email_prefix))
        compiled = session.statements[-1].compile(dialect=dialect())  # type: ignore[no-untyped-call]
        names = compiled.positiontup or []
        return str(compiled), [compiled.params[n] for n in names], "UserRepository.page (captured)"
    except Exception as exc:
        where: list[str] = []
        params: list[Any] = []
        if after is not None:
            params += list(after)
            where.append("(users.created_at, users.id) > ($1::timestamptz, $2::uuid)")
        if email_prefix:
            params.append(email_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
            where.append(f"users.email LIKE ${len(params)}::varchar ESCAPE '\\'")
        params.append(limit + 1)
        sql = PAGE_SQL.format(where=" WHERE " + " AND ".join(where) if where else "", n=len(params))
        return sql, params, f"handwritten ({type(exc).__name__}: {exc})"


def _literal(value: Any) -> str:
    if isinstance(value, bool | int | float):
        return str(value)
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text.replace("'", "''") + "'"


async def explain(dsn: str, sql: str, params: list[Any], warm: int = 6) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of a prepared statement, first run and after `warm` runs.

    The service's driver prepares and reuses statements per connection; after five runs PostgreSQL
    may switch a prepared statement to a generic plan, which cannot use a LIKE prefix on an index.
    Both plans are kept: the warm one is what a busy service gets.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"PREPARE bench_page AS {sql}")
        execute = "EXECUTE bench_page(" + ", ".join(_literal(p) for p in params) + ")"
        plan = "EXPLAIN (ANALYZE, BUFFERS) " + execute
        first = [r[0] for r in await conn.fetch(plan)]
        for _ in range(warm):
            await conn.fetch(execute)
        warmed = [r[0] for r in await conn.fetch(plan)]
        await conn.execute("DEALLOCATE bench_page")
    finally:
        await conn.close()
    return {"sql": sql, "params": [str(p) for p in params], "first": first, "warm": warmed}


def plan_uses(plan: list[str], index: str) -> bool:
    return any(index in line for line in plan)


def plan_time_ms(plan: list[str]) -> float | None:
    for line in plan:
        if line.strip().startswith("Execution Time:"):
            return float(line.split(":")[1].split()[0])
    return None


# --- 3: the admin listing at size ----------------------------------------------------------


def scenario_3(ctx: Context) -> dict[str, Any]:
    from userapi.core.security import hash_password_sync

    if not ctx.seeded:
        log(f"scenario 3: seeding {ctx.opts.users:,} users (COPY)")
        seconds = asyncio.run(seed_users(ctx.db_url, ctx.opts.users, hash_password_sync(PASSWORD, 12)))
        ctx.seeded = True
        log(f"  seeded in {seconds:.1f} s")
    total = int(sql(ctx.db_url, "SELECT count(*) FROM users")[0][0])
    page_no = max(1, min(DEEP_PAGES, total // LIMIT))
    deep_after = asyncio.run(row_at(ctx.db_url, (page_no - 1) * LIMIT - 1)) if page_no > 1 else None
    prefix = prefix_matching(ctx.opts.users)
    cases = {
        "first_page": (f"/api/v1/users?limit={LIMIT}", None, None),
        "deep_page": (
            f"/api/v1/users?limit={LIMIT}&cursor={encode_cursor(*deep_after)}" if deep_after else "",
            deep_after,
            None,
        ),
        "email_prefix": (f"/api/v1/users?limit={LIMIT}&email={prefix}", None, prefix),
    }
    out: dict[str, Any] = {"users": total, "deep_page_number": page_no, "email_prefix": prefix, "cases": {}}
    seconds = max(1, ctx.opts.duration // 2)
    with ctx.servers(ctx.opts.workers) as (service, floor):
        token = ctx.token(service.port, "bench-admin@example.com", admin=True)
        _check_listing(ctx, service, floor, token, cases)
        for name, (path, after, email_prefix) in cases.items():
            if not path:
                continue
            log(f"scenario 3: {name} ({path[:60]}), wrk -t1 -c1")
            result = ctx.alternate(
                service,
                floor,
                path,
                seconds,
                threads=1,
                connections=1,
                headers=(f"Authorization: Bearer {token}",),
            )
            statement, params, source = page_statement(LIMIT, after, email_prefix)
            result["explain"] = asyncio.run(explain(ctx.db_url, statement, params)) | {"source": source}
            out["cases"][name] = result
    first = out["cases"]["first_page"]["service"]["p50_ms"]
    deep = out["cases"].get("deep_page", {}).get("service", {}).get("p50_ms", first)
    prefix = out["cases"]["email_prefix"]
    out["deep_over_first_p50"] = round(ratio(deep, first), 3)
    out["prefix_over_first_p50"] = round(ratio(prefix["service"]["p50_ms"], first), 3)
    # The custom plan shows the index can serve the prefix; the warm plan is what a busy service
    # runs. On a small table PostgreSQL may rightly prefer a generic plan that scans: the measured
    # p50 (within 2x of the first page) is what says whether that is a problem.
    out["email_index_used"] = {
        kind: plan_uses(prefix["explain"][kind], "uq_users_email") for kind in ("first", "warm")
    }
    errors = sum(c["service"]["errors"] for c in out["cases"].values())
    out["passed"] = bool(
        out["deep_over_first_p50"] <= 2
        and out["prefix_over_first_p50"] <= 2
        and out["email_index_used"]["first"]
        and not errors
    )
    return out


def _check_listing(ctx: Context, service: Server, floor: Server, token: str, cases: dict[str, Any]) -> None:
    """The API's cursor is the one built from SQL, and each case answers the same rows on both servers."""
    first = expect(service.port, "GET", cases["first_page"][0], 200, token=token)
    built = encode_cursor(*asyncio.run(row_at(ctx.db_url, LIMIT - 1)))
    if first["next_cursor"] != built:
        raise BenchError(f"the API's cursor {first['next_cursor']!r} differs from the bench's {built!r}")
    for name, (path, _, _) in cases.items():
        if not path:
            continue
        ids = [
            [u["id"] for u in expect(s.port, "GET", path, 200, token=token)["items"]]
            for s in (service, floor)
        ]
        if ids[0] != ids[1] or not ids[0]:
            raise BenchError(
                f"{name}: the service and the floor answered different rows ({len(ids[0])} rows)"
            )
