"""SQLAlchemy statements compiled once for a raw sqlite3 connection.

The hot writes on SQLite run as plain sqlite3 calls inside `Database.write_now` (the ledger's
charges, a job's submission): one SQL text shared with the SQLAlchemy path, without the cost
of compiling, of the async adapter and of a trip to its thread per statement. Values go
through the columns' own bind processors, so a JSON or boolean column stores exactly what
SQLAlchemy would store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

_DIALECT = sqlite.dialect()


class SqliteStatement:
    """`statement(connection, **params)` runs it and returns every row."""

    def __init__(self, statement: ClauseElement, column_keys: Sequence[str] | None = None) -> None:
        compiled = statement.compile(dialect=_DIALECT, column_keys=column_keys)
        assert isinstance(compiled, SQLCompiler)
        if any(bind.expanding for bind in compiled.binds.values()):
            # `column.in_(values)` is compiled to a placeholder that SQLAlchemy expands when it
            # executes; sent as it stands it is a syntax error, found only when it runs.
            raise ValueError(f"An IN list cannot be run as a compiled statement: {compiled.string}")
        self.sql = compiled.string
        self.names: Sequence[str] = compiled.positiontup or []
        processors: dict[str, Callable[[Any], Any]] = compiled._bind_processors  # type: ignore[assignment]
        self._steps = [(name, processors.get(name)) for name in self.names]
        # Values the statement itself holds (`column == "x"`), rather than `bindparam("b_x")`.
        self._fixed = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}

    def __call__(self, connection: sqlite3.Connection, **params: Any) -> list[Any]:
        if self._fixed:
            params = {**self._fixed, **params}
        values = [params[name] if process is None else process(params[name]) for name, process in self._steps]
        return connection.execute(self.sql, values).fetchall()
