"""PostgreSQL for the tests: one fresh database per test.

The server comes from ``CORRAL_TEST_POSTGRES_URL`` (``.ci/postgres.sh``
starts one and prints it). Without it, PostgreSQL tests are skipped locally,
and fail in CI (``CI`` set): there they must run, never silently skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

URL_VARIABLE = "CORRAL_TEST_POSTGRES_URL"


def postgres_url() -> str:
    """Returns the server's URL, or skips (locally) or fails (in CI) the test."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        return url

    message = (
        f"{URL_VARIABLE} is not set; run: export {URL_VARIABLE}=$(.ci/postgres.sh)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests must run in CI: {message}")
    pytest.skip(message)


@contextmanager
def fresh_database() -> Iterator[str]:
    """Creates an empty, uniquely named database; yields its URL; drops it.

    The role in the server URL needs ``CREATEDB`` (``.ci/postgres.sh`` grants it).
    """
    server = sa.make_url(postgres_url())
    name = f"corral_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
