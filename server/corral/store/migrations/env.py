"""Alembic environment for corral's store.

:meth:`corral.store.Store.migrate` runs Alembic programmatically and hands
over its own connection, already inside a transaction, through
``config.attributes["connection"]``. For running Alembic by hand (to write a
new revision), ``sqlalchemy.url`` in the config names the database instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from corral.store._schema import metadata


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return

    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection to migrate")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("corral's migrations run online only")
_main()
