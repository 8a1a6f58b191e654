"""ListQuery -> SQL, shared by the SQLite and PostgreSQL backends.

Field names only ever come from our own constants (the schemas reject any
other), and every value is a bound parameter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from fleet_api.store.base import ListQuery, SessionRecord, TokenId


@dataclasses.dataclass(frozen=True)
class Dialect:
    mark: str  # the driver's placeholder
    collate: str  # makes text compare by code point and fold only ASCII


SQLITE = Dialect(mark="?", collate="")
POSTGRES = Dialect(mark="%s", collate=' COLLATE "C"')


def where(query: ListQuery, text_fields: tuple[str, ...], dialect: Dialect) -> tuple[str, list]:
    clauses, params = [], []
    c, m = dialect.collate, dialect.mark
    for field, value in query.equals:
        clauses.append(f"lower({field}{c}) = lower({m}{c})")
        params.append(value)
    for field, low, high in query.ranges:
        if low is not None:
            clauses.append(f"{field} >= {m}")
            params.append(low)
        if high is not None:
            clauses.append(f"{field} <= {m}")
            params.append(high)
    if query.text is not None:
        # strpos/instr rather than LIKE: no wildcard in q can change its meaning.
        find = "strpos" if dialect is POSTGRES else "instr"
        clauses.append(
            "(" + " OR ".join(f"{find}(lower({f}{c}), lower({m}{c})) > 0" for f in text_fields) + ")"
        )
        params.extend([query.text] * len(text_fields))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def order_and_page(query: ListQuery, dialect: Dialect, text_fields: tuple[str, ...]) -> tuple[str, list]:
    keys = [
        f"{field}{dialect.collate if field in text_fields else ''} {'DESC' if desc else 'ASC'}"
        for field, desc in query.sort
    ]
    keys.append("id ASC")
    sql = " ORDER BY " + ", ".join(keys)
    params: list = []
    if query.limit is not None:
        sql += f" LIMIT {dialect.mark} OFFSET {dialect.mark}"
        params += [query.limit, query.offset]
    elif query.offset:
        sql += f" LIMIT -1 OFFSET {dialect.mark}" if dialect is SQLITE else f" OFFSET {dialect.mark}"
        params.append(query.offset)
    return sql, params


# --- sessions: one row <-> one SessionRecord, the same on both backends -------
SESSION_COLUMNS = (
    "id, user_id, created_at, last_used_at, expires_at, user_agent, ip,"
    " refresh_jti, refresh_iat, refresh_exp, previous_jti, rotated_at"
)
SESSION_COLUMN_COUNT = SESSION_COLUMNS.count(",") + 1


def session_values(s: SessionRecord) -> tuple:
    """The row of a session, in SESSION_COLUMNS order."""
    return (
        s.id, s.user_id, s.created_at, s.last_used_at, s.expires_at, s.user_agent, s.ip,
        s.refresh.jti, s.refresh.iat, s.refresh.exp, s.previous_jti, s.rotated_at,
    )  # fmt: skip


def session_record(row: tuple) -> SessionRecord:
    """The session of a row read with SESSION_COLUMNS."""
    sid, user_id, created_at, last_used_at, expires_at, user_agent, ip, jti, iat, exp, previous, rotated = row
    return SessionRecord(
        sid,
        user_id,
        created_at,
        last_used_at,
        expires_at,
        user_agent,
        ip,
        TokenId(jti, iat, exp),
        previous,
        rotated,
    )


def session_update(dialect: Dialect) -> tuple[str, Callable[[SessionRecord], tuple]]:
    """UPDATE of every column of a session by its id, and its parameters."""
    columns = [c.strip() for c in SESSION_COLUMNS.split(",")][1:]
    statement = (
        f"UPDATE sessions SET {', '.join(f'{c} = {dialect.mark}' for c in columns)} WHERE id = {dialect.mark}"
    )
    return statement, lambda s: (*session_values(s)[1:], s.id)
