"""The store's errors, and the one place where driver exceptions become them.

Callers of the store never see SQLAlchemy, sqlite3, psycopg or Alembic
exceptions: every public method runs inside :func:`translate_errors`, which
re-raises them as :class:`StoreError` (``raise ... from``, so the cause stays
in the traceback for the logs).

    CorralError
    └── StoreError                  the database failed or refused a change
        └── StoreIntegrityError     a constraint was violated (duplicate key)
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import alembic.util
import sqlalchemy.exc

from corral.core.errors import CorralError

_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.SQLAlchemyError,
    alembic.util.CommandError,
    sqlite3.Error,
    OSError,
)
try:
    import psycopg
except ImportError:  # pragma: no cover - psycopg is an optional dependency
    pass
else:
    _DRIVER_ERRORS += (psycopg.Error,)


class StoreError(CorralError):
    """The database could not be reached, or failed or refused an operation.

    Nothing of the failed call was written: every call is one transaction.
    """

    reason = "STORE_ERROR"


class StoreIntegrityError(StoreError):
    """A change broke a constraint, such as a duplicate instance id or report."""

    reason = "STORE_INTEGRITY_ERROR"


@contextlib.contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    """Re-raises any driver exception inside the block as a :class:`StoreError`.

    Args:
        operation: what the store was doing, for the message ("commit").

    Raises:
        StoreIntegrityError: a constraint was violated.
        StoreError: any other database, driver, migration or file error.
    """
    try:
        yield
    except sqlalchemy.exc.IntegrityError as exc:
        raise StoreIntegrityError(f"store {operation} refused: {exc.orig}") from exc
    except sqlalchemy.exc.DBAPIError as exc:
        raise StoreError(f"store {operation} failed: {exc.orig}") from exc
    except _DRIVER_ERRORS as exc:
        raise StoreError(f"store {operation} failed: {exc}") from exc
