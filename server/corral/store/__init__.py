"""Durable state of corral: container records, instances and the event log.

The store speaks the domain model of :mod:`corral.core.model` and never lets a
driver exception out: failures are :class:`StoreError`. The schema comes only
from the Alembic migrations packaged under ``migrations/``
(:meth:`Store.migrate`).
"""

from corral.store._errors import StoreError, StoreIntegrityError
from corral.store._store import InstanceRow, Store

__all__ = ["InstanceRow", "Store", "StoreError", "StoreIntegrityError"]
