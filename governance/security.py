"""Passwords (argon2id) and API tokens (random, stored as sha256 only)."""

from __future__ import annotations

import hashlib
import secrets

from collections.abc import Iterable
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .domain import N_
from .errors import GovernanceError

#: argon2id with the library's defaults (RFC 9106's second recommendation: t=3, m=64 MiB, p=4).
PRODUCTION_HASHER = PasswordHasher()
_hasher = PRODUCTION_HASHER
TOKEN_PREFIX = "gov_"
#: NIST SP 800-63B 5.1.1.2 asks for at least 8 and a check against known-compromised values; OWASP ASVS 4.0
#: 2.1.1 for at least 12. No composition rules (SP 800-63B advises against them).
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
#: zxcvbn scores 0-4; 3 is "safely unguessable: moderate protection from an offline slow-hash scenario"
#: (about 10^8 guesses or more).
MIN_PASSWORD_SCORE = 3


class WeakPasswordError(GovernanceError, ValueError):
    """The password breaks the policy. ``template`` is a marked English sentence (the pages translate it),
    ``params`` its placeholders; ``str()`` is the English sentence the CLI and the API show."""

    def __init__(self, template: str, **params: Any):
        self.template, self.params = template, params
        super().__init__(template % params if params else template)


@cache
def _common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of the Xato corpus, as zxcvbn ships them (offline, in its wheel)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def check_password_strength(password: str, user_inputs: Iterable[str] = ()) -> None:
    """Raise :class:`WeakPasswordError` saying what is wrong: too short, too long, one of the common
    passwords, built from the account's own e-mail or name, or otherwise easy to guess (zxcvbn)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPasswordError(N_("A password needs at least %(minimum)d characters (this one has %(length)d)."),
                                minimum=MIN_PASSWORD_LENGTH, length=len(password))
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPasswordError(N_("A password may have at most %(maximum)d characters."),
                                maximum=MAX_PASSWORD_LENGTH)
    folded = password.strip().lower()
    if folded in _common_passwords() or folded.replace(" ", "") in _common_passwords():
        raise WeakPasswordError(N_("This password is on the list of the 30,000 most common passwords: choose "
                                   "another."))
    inputs = [part for value in user_inputs for part in _parts(value)]
    if any(len(part) >= 4 and part in folded for part in inputs):
        raise WeakPasswordError(N_("A password may not contain your e-mail address or your name."))
    from zxcvbn import zxcvbn

    if len(set(folded)) < 5 or zxcvbn(password[:100], user_inputs=inputs)["score"] < MIN_PASSWORD_SCORE:
        raise WeakPasswordError(N_("This password is too easy to guess (repeated characters, keyboard rows, "
                                   "sequences, common words or dates): use a longer phrase of unrelated words."))


def _parts(value: str) -> list[str]:
    value = value.strip().lower()
    local = value.split("@", 1)[0]
    return [p for p in {value, local, *local.replace(".", " ").replace("_", " ").replace("-", " ").split(),
                        *value.split()} if p]


def use_hasher(hasher: PasswordHasher) -> PasswordHasher:
    """Hash new passwords with ``hasher`` and return the previous one. Only the test suite and benchmarks call
    it (cheap parameters); stored hashes carry their parameters, so verification works across the swap."""
    global _hasher
    previous, _hasher = _hasher, hasher
    return previous


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    if not password_hash or not password:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash(secrets.token_urlsafe(16))


def verify_dummy(password: str) -> bool:
    """Verify ``password`` against a hash of a random secret made with the current parameters (always False):
    a sign-in for an unknown or disabled account costs what a known one costs, so timing tells nothing."""
    try:
        _hasher.verify(_dummy_hash(_hasher), password or "-")
    except (VerificationError, InvalidHashError):
        pass
    return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
