"""Engine and sessions.

One engine per app. A request, CLI command or job gets one session and commits once, at its end;
operations only flush. Work that must wait for the commit (starting an audit thread that reads the
committed rows, sending mail) is queued with :func:`after_commit`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import Flask, current_app, g
from sqlalchemy import event as sa_event
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from werkzeug.routing import IntegerConverter

from .schemas import MAX_ROW_ID

_EXTENSION = "governance.db"
_AFTER_COMMIT = "governance.after_commit"
_AFTER_ROLLBACK = "governance.after_rollback"


class RowIdConverter(IntegerConverter):
    """``<id:name>`` in a route: ids are positive 32-bit database integers, so a larger one matches no route
    (404) instead of reaching PostgreSQL as an out-of-range parameter (500)."""

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=MAX_ROW_ID)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa_event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _run_after_commit(session) -> None:
    callbacks = session.info.pop(_AFTER_COMMIT, [])
    for callback in callbacks:
        callback()


def _drop_after_commit(session) -> None:
    session.info.pop(_AFTER_COMMIT, None)


def _on_rollback(session, _previous) -> None:
    _drop_after_commit(session)
    if session.in_transaction():  # a savepoint rolled back inside a transaction that goes on
        return
    for callback in session.info.pop(_AFTER_ROLLBACK, []):
        callback()


def make_session_factory(engine: Engine) -> sessionmaker:
    factory = sessionmaker(bind=engine, class_=Session, expire_on_commit=False)
    sa_event.listen(factory, "after_commit", _run_after_commit)
    sa_event.listen(factory, "after_commit", lambda session: session.info.pop(_AFTER_ROLLBACK, None))
    sa_event.listen(factory, "after_soft_rollback", _on_rollback)
    return factory


def after_commit(session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's current transaction commits (dropped on rollback)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def after_rollback(session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's current transaction is rolled back (dropped on commit): the record
    of a refusal (a failed electronic signature) that must outlive the refused change. The callback runs in a
    fresh transaction of the same session and commits what it writes itself."""
    session.info.setdefault(_AFTER_ROLLBACK, []).append(callback)


class Database:
    """The app's engine and session factory."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.session_factory = make_session_factory(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A session that commits at the end of the block, or rolls back on error."""
        session = self.session_factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def init_app(app: Flask) -> None:
    database = Database(app.config["GOVERNANCE"].sqlalchemy_url)
    app.extensions[_EXTENSION] = database

    def close_session(_exc=None):
        session = g.pop("_db_session", None)
        if session is not None:
            session.rollback()
            session.close()

    # Per request (an app context may outlive several requests, e.g. in a shell) and per app context.
    app.teardown_request(close_session)
    app.teardown_appcontext(close_session)


def get_db(app: Flask | None = None) -> Database:
    return (app or current_app).extensions[_EXTENSION]


def get_session() -> Session:
    """The session of the current request or CLI command (one per app context)."""
    if "_db_session" not in g:
        g._db_session = get_db().session_factory()
    return g._db_session


def commit() -> None:
    """Commit the current app context's session: called by the request, command or job, never by operations."""
    session = g.get("_db_session")
    if session is not None:
        session.commit()
