"""Passwords are scrypt hashes, checked in constant time."""

from __future__ import annotations

from fleet_api.passwords import PasswordHasher

hasher = PasswordHasher()  # the production cost


def test_a_hash_names_scrypt_and_its_cost_and_never_holds_the_password():
    encoded = hasher.hash("more secret")
    scheme, n, r, p, salt, key = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert "more secret" not in encoded


def test_the_right_password_verifies_and_a_wrong_one_does_not():
    encoded = hasher.hash("password")
    assert hasher.verify("password", encoded)
    assert not hasher.verify("passwore", encoded)


def test_two_hashes_of_one_password_differ_by_their_salt():
    assert hasher.hash("password") != hasher.hash("password")


def test_an_unknown_user_never_verifies():
    assert not hasher.verify("anything", None)


def test_a_hash_made_at_another_cost_still_verifies():
    old = PasswordHasher(n=2**10).hash("password")
    assert hasher.verify("password", old)
