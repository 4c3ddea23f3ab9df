"""The database's clock, for every time that processes on different machines compare.

Leases are written by one machine and judged by reapers on others: with each machine's own
clock, a worker 90 s behind would have its live jobs reaped. `db_now()` renders the server's
current UTC time (plus an offset) inside the statement, so all of them use one clock.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import Float, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from app.tables import UTCDateTime


class db_now(FunctionElement[datetime]):  # noqa: N801  (reads as a SQL function)
    """The database server's time now, in UTC, plus `offset_seconds`."""

    type = UTCDateTime()
    inherit_cache = True
    name = "db_now"

    def __init__(self, offset_seconds: float = 0.0) -> None:
        super().__init__(literal(float(offset_seconds), Float()))


@compiles(db_now, "postgresql")
def _postgresql(element: db_now, compiler: Any, **kw: Any) -> str:
    # Columns are `timestamp without time zone` holding UTC. clock_timestamp() moves within a
    # transaction; a lease granted late in a long transaction still lasts its full length.
    offset = compiler.process(element.clauses, **kw)
    return (
        "((clock_timestamp() AT TIME ZONE 'UTC') "
        f"+ make_interval(secs => CAST({offset} AS double precision)))"
    )


@compiles(db_now, "sqlite")
def _sqlite(element: db_now, compiler: Any, **kw: Any) -> str:
    # The text form SQLAlchemy stores SQLite datetimes in ('YYYY-MM-DD HH:MM:SS.ffffff'), so
    # comparisons with stored values are plain string comparisons that order correctly.
    offset = compiler.process(element.clauses, **kw)
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now', printf('%+.3f seconds', {offset}))"
