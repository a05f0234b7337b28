"""People, their roles, and their API tokens."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Column, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from ..domain import AccountSource, NotificationDelivery, Role
from .base import in_enum, utcnow


class User(SQLModel, table=True):
    __tablename__ = "user_account"
    __table_args__ = (in_enum("source", AccountSource), in_enum("notification_delivery", NotificationDelivery),
                      UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_user_account_oidc_identity"),
                      CheckConstraint("(oidc_issuer IS NULL) = (oidc_subject IS NULL)", name="oidc_identity_whole"))

    id: int | None = Field(default=None, primary_key=True)
    #: Lower-cased; the login name.
    email: str = Field(sa_column=Column(String(254), unique=True, nullable=False))
    name: str = Field(max_length=200)
    #: Chinese name, printed beside the name in dossiers when known.
    name_zh: str = Field(default="", max_length=200)
    #: argon2id hash; empty for accounts that may only use API tokens.
    password_hash: str = Field(default="", max_length=255)
    active: bool = True
    #: Committee composition used by quorum rules (45 CFR 46.107, Sci-Tech Ethics Review Art. 14).
    is_scientist: bool = True
    is_affiliated: bool = True
    #: Failed sign-ins since the last success (for the admin's eye; sign-in is throttled per account and
    #: address, never locked for everyone). ``locked_until`` is no longer set.
    failed_logins: int = 0
    locked_until: datetime | None = None
    #: Bumped at sign-out, password change, role change and deactivation: a web session remembers the epoch it
    #: began in and is refused once they differ (every session of the account ends at once).
    session_epoch: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    #: The person's language for pages and e-mails (a locale code the interface offers); empty: the browser's,
    #: else the instance's default.
    language: str = Field(default="", max_length=10, sa_column_kwargs={"server_default": ""})
    #: Where the account's identity lives (:class:`~governance.domain.AccountSource`): only a ``local`` account
    #: may have a password of this app.
    source: str = Field(default=AccountSource.LOCAL.value, max_length=10,
                        sa_column_kwargs={"server_default": AccountSource.LOCAL.value})
    #: The OpenID provider's identity of the person (``iss`` and ``sub`` of their ID token), once they signed in
    #: through it; the account is found by these, never by the e-mail.
    oidc_issuer: str | None = Field(default=None, max_length=500)
    oidc_subject: str | None = Field(default=None, max_length=255)
    #: How the person gets the e-mails of their notifications: ``immediate`` (one each) or ``daily`` (a digest).
    notification_delivery: str = Field(default=NotificationDelivery.IMMEDIATE.value, max_length=10,
                                       sa_column_kwargs={"server_default": NotificationDelivery.IMMEDIATE.value})
    #: The day the last daily digest went, so repeated scheduler ticks send one a day.
    digest_sent_on: date | None = None
    created_at: datetime = Field(default_factory=utcnow)

    # Flask-Login protocol
    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)


class RoleAssignment(SQLModel, table=True):
    __tablename__ = "role_assignment"
    __table_args__ = (UniqueConstraint("user_id", "role", name="uq_role_assignment_user_role"),
                      in_enum("role", Role))

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    role: str = Field(max_length=40)
    granted_at: datetime = Field(default_factory=utcnow)
    granted_by_id: int | None = Field(default=None, foreign_key="user_account.id")


class ApiToken(SQLModel, table=True):
    """A bearer token; only its sha256 is stored, the token itself is shown once."""

    __tablename__ = "api_token"
    __table_args__ = (in_enum("scope", ["read", "submit", "watch"]),
                      CheckConstraint("(scope = 'watch') = (deployment_id IS NOT NULL)", name="watch_has_deployment"))

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    name: str = Field(max_length=100)
    #: First characters of the token, to let people recognise it in a list.
    prefix: str = Field(max_length=16)
    token_sha256: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    scope: str = Field(default="read", max_length=10)
    #: A ``watch`` token posts interaction samples of this one deployment and can do nothing else.
    deployment_id: int | None = Field(default=None, foreign_key="deployment.id")
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
