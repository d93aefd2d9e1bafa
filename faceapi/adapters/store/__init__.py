"""Persistence: SQLAlchemy Core tables, Alembic migrations, the unit of work.

`Store.from_settings(settings)` is what the composition root builds; services receive
`store.uow` (a UnitOfWorkFactory) and never see SQLAlchemy.
"""

from faceapi.adapters.store.db import make_engine
from faceapi.adapters.store.migrate import upgrade
from faceapi.adapters.store.store import Store

__all__ = ["Store", "make_engine", "upgrade"]
