"""Migrations: upgrade an empty database to head, down to base, up again, and no drift from the models."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from governance import migrate

from .conftest import POSTGRES_URL, _schema_url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    if not POSTGRES_URL:
        pytest.skip("GOVERNANCE_TEST_POSTGRES_URL is not set")
    schema = f"gov_migrations_{request.node.name[-6:].strip('[]')}_{id(request) % 100000}"
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield _schema_url(POSTGRES_URL, schema)
    with engine.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_and_no_drift(empty_database):
    migrate.upgrade(empty_database)
    assert _tables(empty_database) == set(SQLModel.metadata.tables)
    migrate.check(empty_database)  # raises if models and migrations differ
    migrate.downgrade(empty_database, "base")
    assert _tables(empty_database) == set()
    migrate.upgrade(empty_database)
    migrate.check(empty_database)
    assert migrate.current_heads(empty_database) == migrate.script_heads() == ["0017_meeting_minutes"]


def test_check_constraints_hold_in_the_database(empty_database):
    migrate.upgrade(empty_database)
    engine = sa.create_engine(empty_database)
    try:
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as connection:
                connection.execute(sa.text(
                    "INSERT INTO role_assignment (user_id, role, granted_at) VALUES (1, 'overlord', CURRENT_TIMESTAMP)"))
    finally:
        engine.dispose()


def test_account_source_marks_the_directory_s_accounts(empty_database):
    """0015: an account whose user_created event says the directory created it becomes ``ldap``; others ``local``."""
    migrate.upgrade(empty_database, "0013_amendments")
    engine = sa.create_engine(empty_database)
    try:
        with engine.begin() as connection:
            for number, (email, payload) in enumerate((
                    ("dir@test.hospital", '{"user": "dir@test.hospital", "source": "directory", "dn": "uid=d"}'),
                    ("own@test.hospital", '{"user": "own@test.hospital", "roles": []}')), start=1):
                connection.execute(sa.text(
                    "INSERT INTO user_account (email, name, name_zh, password_hash, active, is_scientist, "
                    "is_affiliated, failed_logins, created_at) VALUES (:email, 'x', '', '', true, true, true, 0, "
                    "CURRENT_TIMESTAMP)"), {"email": email})
                connection.execute(sa.text(
                    "INSERT INTO event (seq, occurred_at, actor, name, payload, prev_hash, hash) VALUES "
                    "(:seq, CURRENT_TIMESTAMP, 'system', 'user_created', :payload, '', :hash)"),
                    {"seq": number, "payload": payload, "hash": f"{number:064d}"})
        migrate.upgrade(empty_database)
        with engine.begin() as connection:
            sources = dict(connection.execute(sa.text("SELECT email, source FROM user_account")).all())
        assert sources == {"dir@test.hospital": "ldap", "own@test.hospital": "local"}
    finally:
        engine.dispose()
