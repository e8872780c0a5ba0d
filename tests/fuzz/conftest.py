"""The real PostgreSQL server fixture of the store suite, for the regressions that need it."""

from tests.unit.service.store.conftest import pg_server  # noqa: F401
