"""``insert_rows`` and ``upsert`` on the real Postgres: one statement for a batch, with what executemany promised."""

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker

from leadpipe_common.db import _insert_sql, insert_rows, upsert


@pytest.fixture
async def tables(db):
    schema = f"t_{uuid.uuid4().hex[:10]}"
    metadata = sa.MetaData(schema=schema)
    rows = sa.Table(
        "rows", metadata,
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("key", sa.Text, nullable=False, unique=True),
        sa.Column("n", sa.SmallInteger),
        sa.Column("doc", sa.JSON, nullable=False),
        sa.Column("facts", JSONB),
        sa.Column("ref", UUID(as_uuid=True)),
        sa.Column("note", sa.Text, server_default="unsaid"),
    )
    async with db.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(metadata.create_all)
    yield rows
    async with db.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


async def stored(db, table):
    async with db.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(sa.select(table).order_by(table.c.seq))]


async def test_a_batch_keeps_its_order_its_values_and_the_defaults_of_what_it_leaves_out(db, tables):
    ref = uuid.uuid4()
    async with async_sessionmaker(db)() as session, session.begin():
        await insert_rows(session, tables, [
            {"key": f"k{i}", "n": i, "doc": {"i": i, "nested": [1, "two"]}, "facts": None, "ref": ref}
            for i in (3, 1, 2)])
    rows = await stored(db, tables)
    assert [r["key"] for r in rows] == ["k3", "k1", "k2"]  # seq follows the order given
    assert rows[0]["doc"] == {"i": 3, "nested": [1, "two"]} and rows[0]["ref"] == ref
    assert rows[0]["note"] == "unsaid"  # left out: the server default
    assert rows[0]["facts"] is None  # Python's None in JSON is JSON null, as SQLAlchemy's JSON type stores it
    async with db.connect() as conn:
        assert (await conn.execute(sa.text(f"SELECT facts::text FROM {tables.fullname} LIMIT 1"))).scalar() == "null"


async def test_rows_written_in_a_transaction_that_rolls_back_are_gone(db, tables):
    async with async_sessionmaker(db)() as session:
        await session.begin()
        await insert_rows(session, tables, [{"key": "gone", "doc": {}}])  # the first statement of the transaction
        await session.rollback()
    assert await stored(db, tables) == []


async def test_an_upsert_replaces_stored_rows_and_the_last_of_a_batch_for_a_key_wins(db, tables):
    async with async_sessionmaker(db)() as session, session.begin():
        await insert_rows(session, tables, [{"key": "a", "n": 1, "doc": {"v": 1}, "note": "first"}])
    async with async_sessionmaker(db)() as session, session.begin():
        await upsert(session, tables, [{"key": "a", "n": 2, "doc": {"v": 2}}, {"key": "b", "n": 5, "doc": {}},
                                       {"key": "a", "n": 3, "doc": {"v": 3}}], key="key")
    rows = {r["key"]: r for r in await stored(db, tables)}
    assert (rows["a"]["n"], rows["a"]["doc"], rows["b"]["n"]) == (3, {"v": 3}, 5)
    assert rows["a"]["note"] == "unsaid"  # replaced whole: what the new row leaves out takes its default


async def test_a_conflict_clause_applies_and_duplicates_are_ignored_when_it_says_so(db, tables):
    async with async_sessionmaker(db)() as session, session.begin():
        await insert_rows(session, tables, [{"key": "a", "doc": {"v": 1}}, {"key": "a", "doc": {"v": 2}}],
                          conflict="ON CONFLICT DO NOTHING")
    assert [r["doc"] for r in await stored(db, tables)] == [{"v": 1}]


async def test_a_schema_translate_map_sends_the_rows_to_the_translated_schema(db, tables):
    shadow = f"{tables.schema}_shadow"
    async with db.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{shadow}"'))
        await conn.execute(sa.text(f'CREATE TABLE "{shadow}".rows (LIKE {tables.fullname} INCLUDING ALL)'))
    try:
        async with db.connect() as conn:
            translated = await conn.execution_options(schema_translate_map={tables.schema: shadow})
            await insert_rows(translated, tables, [{"seq": 1, "key": "s", "doc": {}}])
            await translated.commit()
            assert (await conn.execute(sa.text(f'SELECT key FROM "{shadow}".rows'))).scalars().all() == ["s"]
        assert await stored(db, tables) == []
    finally:
        async with db.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{shadow}" CASCADE'))


async def test_rows_with_different_columns_are_refused_naming_the_table(db, tables):
    async with async_sessionmaker(db)() as session, session.begin():
        with pytest.raises(ValueError, match="same columns"):
            await insert_rows(session, tables, [{"key": "a", "doc": {}}, {"key": "b", "n": 1}])


async def test_a_database_error_is_sqlalchemys_as_through_a_session(db, tables):
    async with async_sessionmaker(db)() as session, session.begin():
        with pytest.raises(DBAPIError, match="null value"):
            await insert_rows(session, tables, [{"key": None, "doc": {}}])


async def test_a_value_too_long_for_its_column_is_refused_not_cut_short(db):
    schema = f"t_{uuid.uuid4().hex[:10]}"
    short = sa.Table("short", sa.MetaData(schema=schema), sa.Column("code", sa.String(3), primary_key=True))
    async with db.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(short.metadata.create_all)
    try:
        async with async_sessionmaker(db)() as session, session.begin():
            with pytest.raises(DBAPIError, match="too long"):
                await insert_rows(session, short, [{"code": "abcd"}])
    finally:
        async with db.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


def test_columns_whose_values_would_not_travel_as_sqlalchemy_sends_them_are_refused():
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("tags", sa.ARRAY(sa.Text)), sa.Column("mood", sa.Enum("glad", "sad", name="mood")),
                     sa.Column("n", sa.Integer, default=7))
    for column in ("tags", "mood"):
        with pytest.raises(TypeError, match=column):
            _insert_sql(table, None, ("id", column), "")
    with pytest.raises(ValueError, match="'n'"):  # its default is SQLAlchemy's: left out, it would be NULL
        _insert_sql(table, None, ("id",), "")
