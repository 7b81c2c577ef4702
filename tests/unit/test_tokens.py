"""Reply tokens: round trips, forgery, case changes, garbage and address splitting."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.tokens import (
    TokenClaims,
    issue_token,
    reply_address,
    split_reply_address,
    verify_token,
)

SECRET = b"k" * 32
SENDER = "alice@example.com"


def test_round_trip() -> None:
    token = issue_token(SECRET, 4711, 3, SENDER)
    assert verify_token(SECRET, token, SENDER) == TokenClaims(4711, 3, SENDER)


def test_tokens_are_lower_case_base32() -> None:
    token = issue_token(SECRET, 4711, 3, SENDER)
    assert set(token) <= set("abcdefghijklmnopqrstuvwxyz234567")


@pytest.mark.parametrize("ticket_id", [0, 1, 127, 128, 10**6, 2**63 - 1])
@pytest.mark.parametrize("version", [0, 1, 300, 2**63 - 1])
def test_round_trip_across_the_range(ticket_id: int, version: int) -> None:
    claims = verify_token(SECRET, issue_token(SECRET, ticket_id, version, SENDER), SENDER)
    assert claims == TokenClaims(ticket_id, version, SENDER)


def test_a_token_verifies_only_for_its_recipient() -> None:
    token = issue_token(SECRET, 1, 1, SENDER)
    for other in ["bob@example.com", "alice@example.org", "alice+x@example.com", ""]:
        assert verify_token(SECRET, token, other) is None


def test_a_wrong_secret_fails() -> None:
    token = issue_token(SECRET, 1, 1, SENDER)
    assert verify_token(b"another secret", token, SENDER) is None


def test_every_single_character_change_fails() -> None:
    token = issue_token(SECRET, 99, 7, SENDER)
    for index, char in enumerate(token):
        for replacement in "a7q":
            if replacement != char:
                tampered = token[:index] + replacement + token[index + 1 :]
                assert verify_token(SECRET, tampered, SENDER) is None


def _raw(token: str) -> bytes:
    return base64.b32decode(token.upper() + "=" * (-len(token) % 8))


def _text(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=").lower()


def test_a_tag_cannot_be_moved_to_another_ticket_or_version() -> None:
    genuine = _raw(issue_token(SECRET, 5, 2, SENDER))
    # Both payloads are two bytes: ticket id and version, one varint byte each.
    for ticket_id, version in [(6, 2), (5, 3), (2, 5)]:
        forged = _text(bytes([ticket_id, version]) + genuine[2:])
        assert verify_token(SECRET, forged, SENDER) is None


def test_a_non_canonical_encoding_fails() -> None:
    genuine = _raw(issue_token(SECRET, 5, 2, SENDER))
    padded = _text(bytes([0x85, 0x00, 2]) + genuine[2:])  # 5 as a two-byte varint
    assert verify_token(SECRET, padded, SENDER) is None


def test_case_does_not_matter() -> None:
    token = issue_token(SECRET, 12, 4, "Alice@Example.COM")
    assert verify_token(SECRET, token.upper(), "ALICE@example.com") == TokenClaims(12, 4, SENDER)
    assert token == issue_token(SECRET, 12, 4, SENDER)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "a",
        "!!!!",
        "x" * 1000,
        "a" * 20,
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "ä" * 24,
        "\u212a" * 24,  # KELVIN SIGN lower-cases to "k"
        "abcdefghijklmnopqrs=",
        "abcdefgh ijklmnopqrstuvw",
        "0189abcdefghijklmnopqrstu",
        "\x00" * 24,
    ],
)
def test_garbage_never_verifies(garbage: str) -> None:
    assert verify_token(SECRET, garbage, SENDER) is None


def test_truncated_or_extended_tokens_fail() -> None:
    token = issue_token(SECRET, 12, 4, SENDER)
    for bad in [token[:-1], token + "a", token[1:], token + token]:
        assert verify_token(SECRET, bad, SENDER) is None


@given(st.text(max_size=80), st.text(max_size=40))
def test_verify_never_raises(token: str, sender: str) -> None:
    assert verify_token(SECRET, token, sender) is None


def test_tokens_fit_a_local_part() -> None:
    longest = issue_token(SECRET, 2**63 - 1, 2**63 - 1, SENDER)
    typical = issue_token(SECRET, 250_000, 12, SENDER)
    assert len(longest) <= 45
    assert len(typical) <= 24
    local = reply_address("support@example.com", longest).split("@")[0]
    assert len(local) <= 64


@pytest.mark.parametrize(("ticket_id", "version"), [(-1, 0), (0, -1), (2**63, 0), (0, 2**63)])
def test_out_of_range_values_are_refused(ticket_id: int, version: int) -> None:
    with pytest.raises(ValueError, match="between 0 and"):
        issue_token(SECRET, ticket_id, version, SENDER)


def test_reply_address_round_trip() -> None:
    token = issue_token(SECRET, 3, 1, SENDER)
    address = reply_address("support@example.com", token)
    assert address == f"support+{token}@example.com"
    assert split_reply_address(address) == ("support@example.com", token)
    assert split_reply_address(address.upper()) == ("SUPPORT@EXAMPLE.COM", token.upper())


def test_an_existing_plus_part_is_kept() -> None:
    token = issue_token(SECRET, 3, 1, SENDER)
    address = reply_address("support+eu@example.com", token)
    assert address == f"support+eu+{token}@example.com"
    assert split_reply_address(address) == ("support+eu@example.com", token)
    assert split_reply_address("support+eu@example.com") == ("support+eu@example.com", None)


@pytest.mark.parametrize(
    "address",
    [
        "support@example.com",
        "",
        "@",
        "no-at-sign",
        "+abcdefghijklmnopqrstuvw@example.com",
        "support+@example.com",
        "support+not-a-token-at-all!!@example.com",
        "support+abc@example.com",
    ],
)
def test_addresses_without_a_token(address: str) -> None:
    assert split_reply_address(address) == (address, None)


@given(st.text(max_size=120))
def test_split_never_raises(address: str) -> None:
    _, token = split_reply_address(address)
    assert token is None or f"+{token}" in address


@pytest.mark.parametrize("department", ["", "support", "@example.com"])
def test_reply_address_needs_an_address(department: str) -> None:
    with pytest.raises(ValueError, match="not an e-mail address"):
        reply_address(department, "token")
