"""Statements compiled once for a raw sqlite3 connection run as SQLAlchemy would run them."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, bindparam, select

from hypereal.store.compiled import SqliteStatement

things = Table(
    "things", MetaData(), Column("id", Integer, primary_key=True), Column("kind", String), Column("data", JSON)
)


@pytest.fixture
def connection() -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, kind TEXT, data JSON)")
    return connection


def test_values_go_through_the_columns_bind_processors(connection: sqlite3.Connection) -> None:
    insert = SqliteStatement(things.insert(), column_keys=["id", "kind", "data"])
    insert(connection, id=1, kind="a", data={"x": [1, 2]})
    assert connection.execute("SELECT data FROM things").fetchone() == ('{"x": [1, 2]}',)


def test_values_the_statement_holds_are_sent_with_the_callers(connection: sqlite3.Connection) -> None:
    connection.executemany("INSERT INTO things (id, kind) VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "a")])
    query = SqliteStatement(select(things.c.id).where(things.c.kind == "a", things.c.id > bindparam("b_least")))
    assert query(connection, b_least=1) == [(3,)]


def test_an_in_list_is_refused_when_compiled_not_when_it_runs() -> None:
    with pytest.raises(ValueError, match="IN list"):
        SqliteStatement(select(things.c.id).where(things.c.kind.in_(("a", "b"))))
