"""Alembic, driven from code: ``govern db ...``, ``govern init`` and the migration tests use this."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from .config import PROJECT_ROOT

MIGRATIONS = PROJECT_ROOT / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    # Passed as an attribute, not an ini option, so '%' in passwords needs no escaping.
    config.attributes["database_url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def current_heads(url: str) -> list[str]:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def script_heads() -> list[str]:
    """The head revision(s) of the migration scripts (what ``upgrade`` reaches)."""
    from alembic.script import ScriptDirectory

    return list(ScriptDirectory.from_config(alembic_config("")).get_heads())


def check(url: str) -> None:
    """Raise if the models and the migrations differ (alembic check)."""
    command.check(alembic_config(url))


def revision_exists(path: Path) -> bool:
    return any((path / "versions").glob("*.py"))
