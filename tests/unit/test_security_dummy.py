"""The unknown-email dummy hash costs a real verify: same algorithm and parameters as real hashes."""

from __future__ import annotations

import time

from argon2 import extract_parameters

from app import security


def test_dummy_hash_has_the_parameters_of_a_real_hash():
    real = security.hash_password("correct horse battery staple")
    assert extract_parameters(security._DUMMY_HASH) == extract_parameters(real)
    assert security._DUMMY_HASH.split("$")[1] == real.split("$")[1]  # argon2id
    assert len(security._DUMMY_HASH) == len(real)


def test_unknown_account_verify_fails_and_costs_about_a_real_verify():
    real = security.hash_password("correct horse battery staple")

    def cost(password_hash):
        # CPU time of this process (Argon2's threads included): what the hash costs, whatever else
        # the machine runs at the same moment (wall time flaked on a loaded 2-core CI machine).
        start = time.process_time()
        assert security.verify_password(password_hash, "a wrong guess") is False
        return time.process_time() - start

    samples = [(cost(None), cost(real)) for _ in range(4)]  # interleaved
    unknown = min(u for u, _ in samples)
    known = min(k for _, k in samples)
    assert 0.5 < unknown / known < 2, (unknown, known)
