"""Password hashing: argon2id with production parameters outside the test suite's cheap profile."""

from __future__ import annotations

from argon2 import PasswordHasher, extract_parameters

from governance import security


def test_production_hashes_use_rfc_9106_parameters_and_verify_after_a_swap():
    previous = security.use_hasher(security.PRODUCTION_HASHER)
    try:
        stored = security.hash_password("a long enough password")
    finally:
        security.use_hasher(previous)
    parameters = extract_parameters(stored)
    assert stored.startswith("$argon2id$")
    assert (parameters.time_cost, parameters.memory_cost, parameters.parallelism) >= (3, 65536, 4)
    # the suite's cheap hasher verifies production hashes (parameters travel with the hash) and vice versa
    assert security.verify_password(stored, "a long enough password")
    assert not security.verify_password(stored, "the wrong password")
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("x" * 12)
    assert security.verify_password(cheap, "x" * 12)
