"""The durable store: `open_store(url)` picks SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

from saferlhf.service.errors import FieldViolation, SpecError
from saferlhf.service.store.base import JobFilter, Store, parse_filter

__all__ = ["JobFilter", "Store", "open_store", "parse_filter"]


def open_store(url: str) -> Store:
    """sqlite:///relative/or/absolute.db, sqlite:///:memory: or postgresql://…"""
    if url.startswith("sqlite:///"):
        from saferlhf.service.store.sqlite import SqliteStore

        return SqliteStore(url[len("sqlite:///"):])
    if url.startswith(("postgresql://", "postgres://")):
        from saferlhf.service.store.postgres import PostgresStore

        return PostgresStore(url)
    raise SpecError([FieldViolation(
        "database_url", f"expected sqlite:///<path> or postgresql://…, got {url!r}")])
