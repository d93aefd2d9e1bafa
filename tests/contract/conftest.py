"""The repository contract: every test here runs once over the in-memory fake
(tests/fakes_store.py) and once over the SQL store (SQLite by default, PostgreSQL with
`--db=postgresql`; the SQL runs are marked `postgres`, so `make test` repeats them there)."""

from __future__ import annotations

import pytest

from faceapi.adapters.store import Store
from faceapi.services.ports import UnitOfWorkFactory
from tests.fakes_store import FakeStore
from tests.integration.conftest import (  # noqa: F401 - fixtures the SQL runs use
    database_url,
    db_backend,
    pg_database_url,
    settings,
    store,
)


@pytest.fixture(params=["fake", pytest.param("sql", marks=pytest.mark.postgres)])
def new_uow(request: pytest.FixtureRequest) -> UnitOfWorkFactory:
    """A unit of work factory over an empty store: the fake or the SQL one."""
    if request.param == "fake":
        return FakeStore().uow  # type: ignore[return-value]
    sql: Store = request.getfixturevalue("store")
    return sql.uow
