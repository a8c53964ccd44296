"""Idempotency keys of generate requests: SQLAlchemy Core statements on the unit of work's connection."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.errors import DuplicateIdempotencyKey
from domain.idempotency import KEY_LIFETIME, IdempotencyRecord
from domain.repositories import IdempotencyRepository
from infrastructure.persistence.engine import storage_errors
from infrastructure.persistence.mapping import idempotency_to_row, row_to_idempotency
from infrastructure.persistence.tables import UtcDateTime, idempotency_keys

_THIS_KEY = sa.and_(
    idempotency_keys.c.owner_id == sa.bindparam("where_owner"),
    idempotency_keys.c.key == sa.bindparam("where_key"),
)
_GET = sa.select(idempotency_keys).where(_THIS_KEY)
_DELETE = sa.delete(idempotency_keys).where(_THIS_KEY)
_DELETE_EXPIRED = sa.delete(idempotency_keys).where(
    _THIS_KEY, idempotency_keys.c.created_at <= sa.bindparam("expired_at", type_=UtcDateTime)
)
_PURGE = sa.delete(idempotency_keys).where(idempotency_keys.c.created_at < sa.bindparam("cutoff", type_=UtcDateTime))
# ON CONFLICT DO NOTHING rather than catching the unique violation: a failed INSERT would abort a PostgreSQL
# transaction, and this way the unit of work stays usable. On PostgreSQL the INSERT waits for a concurrent
# transaction that inserted the same key, then does nothing if it committed. The primary key is not deferrable,
# so a duplicate is always detected here and never at commit.
_INSERT_NEW = {
    "postgresql": postgresql.insert(idempotency_keys).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(idempotency_keys).on_conflict_do_nothing(),
}


class SqlAlchemyIdempotencyRepository(IdempotencyRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection
        self._insert_new = _INSERT_NEW[connection.dialect.name]

    async def get(self, owner_id: str, key: str) -> IdempotencyRecord | None:
        with storage_errors():
            row = (await self._conn.execute(_GET, _where(owner_id, key))).mappings().first()
        return None if row is None else row_to_idempotency(row)

    async def add(self, record: IdempotencyRecord) -> None:
        # Expired means `not record.live(now)` as of the new record's creation: created KEY_LIFETIME or more before.
        expired = {**_where(record.owner_id, record.key), "expired_at": record.created_at - KEY_LIFETIME}
        with storage_errors():
            await self._conn.execute(_DELETE_EXPIRED, expired)
            result = await self._conn.execute(self._insert_new, idempotency_to_row(record))
        if result.rowcount != 1:
            raise DuplicateIdempotencyKey(f"idempotency key {record.key!r} is already stored for this user")

    async def delete(self, owner_id: str, key: str) -> None:
        with storage_errors():
            await self._conn.execute(_DELETE, _where(owner_id, key))

    async def purge(self, created_before: datetime) -> int:
        with storage_errors():
            result = await self._conn.execute(_PURGE, {"cutoff": created_before})
        return result.rowcount


def _where(owner_id: str, key: str) -> dict[str, str]:
    return {"where_owner": owner_id, "where_key": key}
