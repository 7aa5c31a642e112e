"""The ``request_log`` table and the row the proxy produces for each request.

No bodies, no headers but the user agent, and the path without its query string:
credentials must never reach the table.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter

import sqlalchemy as sa

metadata = sa.MetaData()

request_log = sa.Table(
    "request_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("client_ip", sa.Text, nullable=False),
    sa.Column("user_sub", sa.Text, nullable=True),
    sa.Column("user_agent", sa.Text, nullable=True),
    sa.Column("request_bytes", sa.BigInteger, nullable=False),
    sa.Column("response_bytes", sa.BigInteger, nullable=False),
    sa.Column("upstream", sa.Text, nullable=True),
    sa.Column("rate_limited", sa.Boolean, nullable=False),
    sa.Index("ix_request_log_ts", "ts"),
    sa.Index("ix_request_log_user_sub_ts", "user_sub", "ts"),
    sa.Index("ix_request_log_status_ts", "status", "ts"),
)


@dataclass(slots=True)
class LogRow:
    """One proxied request. The one list of the logged columns: the writer's COPY and the
    admin API's schema are both derived from these fields."""

    ts: datetime
    request_id: str
    method: str
    path: str
    route: str
    status: int
    latency_ms: float
    client_ip: str
    user_sub: str | None
    user_agent: str | None
    request_bytes: int
    response_bytes: int
    upstream: str | None
    rate_limited: bool


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LogRow))
# A row as a COPY record, in COLUMNS order; attrgetter builds the tuple in C, without the
# deep copy of dataclasses.astuple (which costs more than the row).
record = attrgetter(*COLUMNS)
