"""Databases at head for tests, without running the migrations once per test.

Migrating a fresh database costs about 0.2 s on SQLite and 0.4 s on PostgreSQL, and
most tests need one. So each session migrates once, for real, and every test gets its
own copy of the result:

- SQLite: the migrated template file is copied (`shutil.copyfile`, about a millisecond).
  create_app's own `store.upgrade()` then finds the copy at head and does nothing.
- PostgreSQL: the migrations run once into a template schema while the SQL they send is
  recorded; each test gets a new schema in which that SQL is replayed, in one
  transaction. The replay is checked once per session against the template (tables,
  columns, constraints, indexes, triggers, functions, rows), so a migration that cannot
  be replayed fails the session instead of passing on a wrong schema. A background
  thread prepares the next schema while a test runs and drops the used ones.
  (`CREATE DATABASE ... TEMPLATE` was measured too: 0.64 s to create and 0.5 s to drop
  one, slower than a schema.)

Tests that need an empty database (migration tests) still get one: see the
`empty_database` marker in tests/integration/conftest.py.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from faceapi.adapters.store.db import make_engine
from faceapi.adapters.store.migrate import MIGRATION_LOCK_KEY, upgrade_engine


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None (another backend, memory, a URI)."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") \
            or database.startswith("file:"):
        return None
    return Path(database)


def build_sqlite_template(path: Path) -> Path:
    """Migrate a new SQLite file at `path` to head, as create_app would, and close it."""
    engine = make_engine(sqlite_url(path))
    try:
        upgrade_engine(engine)
    finally:
        engine.dispose()
    # Closing the last connection checkpoints the WAL into the file and removes it: the
    # file alone is then the whole database (and copies of it are complete).
    for suffix in ("-wal", "-journal"):
        leftover = Path(f"{path}{suffix}")
        if leftover.exists() and leftover.stat().st_size:
            raise RuntimeError(f"{leftover} left behind: the template is not one file")
    return path


def copy_sqlite_template(template: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)


# --- PostgreSQL -------------------------------------------------------------------------

Statement = tuple[str, Any, bool]  # SQL as sent to the driver, its parameters, executemany


def schema_url(base_url: str, schema: str) -> str:
    """`base_url` with every connection's search_path set to `schema` (so the tables,
    trigger functions and alembic_version of that test all live in it)."""
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def _fingerprint(conn: Connection, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """What a schema holds, with its own name taken out so two schemas compare."""
    queries = {
        "columns": "SELECT table_name, column_name, ordinal_position, data_type, "
                   "is_nullable, column_default, character_maximum_length "
                   "FROM information_schema.columns WHERE table_schema = :s",
        "constraints": "SELECT c.conrelid::regclass::text, c.conname, c.contype, "
                       "pg_get_constraintdef(c.oid) FROM pg_constraint c "
                       "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = :s",
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes "
                   "WHERE schemaname = :s",
        "triggers": "SELECT event_object_table, trigger_name, action_timing, "
                    "event_manipulation, action_orientation, action_statement "
                    "FROM information_schema.triggers WHERE trigger_schema = :s",
        "functions": "SELECT p.proname, pg_get_function_identity_arguments(p.oid), p.prosrc "
                     "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                     "WHERE n.nspname = :s",
        "sequences": "SELECT sequence_name, data_type, start_value, increment "
                     "FROM information_schema.sequences WHERE sequence_schema = :s",
    }
    found: dict[str, list[tuple[Any, ...]]] = {}
    for name, query in queries.items():
        rows = conn.execute(text(query), {"s": schema}).all()
        found[name] = sorted(tuple(str(v).replace(f'"{schema}".', "").replace(f"{schema}.", "")
                                   if v is not None else None for v in row) for row in rows)
    tables = [row[0] for row in conn.execute(text(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = :s "
        "AND table_type = 'BASE TABLE'"), {"s": schema})]
    found["rows"] = sorted(
        (table, tuple(sorted(map(repr, conn.execute(text(f'SELECT * FROM "{schema}"."{table}"'))))))
        for table in tables)
    return found


class PgSchemas:
    """Hands out PostgreSQL schemas at head in the database at `base_url` (the session's
    own database, which is dropped with everything in it at the end)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._admin: Engine = create_engine(base_url)
        self._statements = self._record_migration()
        self._check_replay()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-schemas")
        self._next: Future[str] = self._executor.submit(self._make)
        self._drops: list[Future[None]] = []

    def _record_migration(self) -> Sequence[Statement]:
        """Run the real migrations into a template schema; keep the SQL they sent."""
        self.template = f"tmpl_{uuid.uuid4().hex[:12]}"
        with self._admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.template}"'))
        engine = make_engine(schema_url(self.base_url, self.template))
        recorded: list[Statement] = []

        def record(_conn: Any, _cursor: Any, statement: str, parameters: Any,
                   _context: Any, executemany: bool) -> None:
            recorded.append((statement, parameters, executemany))

        event.listen(engine, "before_cursor_execute", record)
        try:
            upgrade_engine(engine)
        finally:
            engine.dispose()
        # The migration lock serialises migrators of one schema; a private schema needs
        # none, and taking it would make a migration test wait for a replay.
        statements = [s for s in recorded
                      if not (s[0].startswith("SELECT pg_advisory_xact_lock")
                              and s[1] == {"k": MIGRATION_LOCK_KEY})]
        for statement, _, _ in statements:
            if self.template in statement:
                raise RuntimeError("a migration names its schema: it cannot be replayed")
        return statements

    def _check_replay(self) -> None:
        copy = self._make()
        try:
            with self._admin.connect() as conn:
                if _fingerprint(conn, copy) != _fingerprint(conn, self.template):
                    raise RuntimeError("replaying the recorded migrations did not give the "
                                       "migrated schema: migrate per test instead")
        finally:
            self._drop(copy)

    def _make(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self._admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
            conn.execute(text(f'SET LOCAL search_path TO "{name}"'))
            # The driver's own cursor, in this transaction: the statements go out exactly
            # as the migration sent them (already compiled, same parameters).
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                for statement, parameters, many in self._statements:
                    if many:
                        cursor.executemany(statement, parameters)
                    else:
                        cursor.execute(statement, parameters)
            finally:
                cursor.close()
        return name

    def _drop(self, name: str) -> None:
        with self._admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))

    def take(self) -> str:
        """A new schema at head, for one test only."""
        with self._lock:
            name = self._next.result()
            self._next = self._executor.submit(self._make)
        return name

    def release(self, name: str) -> None:
        """Drop a used schema (in the background; every connection to it is closed)."""
        with self._lock:
            self._drops.append(self._executor.submit(self._drop, name))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._admin.dispose()
        for drop in self._drops:
            drop.result()  # a schema that could not be dropped fails the session
