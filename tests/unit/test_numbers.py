"""Ticket number masks: placeholders, literals, dates, validation and spread."""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import UTC, datetime

import pytest

from core.numbers import DEFAULT_MASK, generate_number, mask_capacity, validate_mask

NOW = datetime(2024, 3, 7, 15, 30, tzinfo=UTC)


def test_default_mask_is_six_random_digits() -> None:
    assert re.fullmatch(r"\d{6}", generate_number(DEFAULT_MASK, NOW))


@pytest.mark.parametrize(
    ("mask", "pattern"),
    [
        ("%n", r"\d"),
        ("%A", r"[A-Z]"),
        ("%a", r"[a-z]"),
        ("%A%a%n%n", r"[A-Z][a-z]\d\d"),
        ("TCK-%n%n%n", r"TCK-\d{3}"),
        ("%y%m%d-%n%n", r"240307-\d\d"),
        ("%%%n", r"%\d"),
        ("%n%%y", r"\d%y"),
        ("#%A.%n/x", r"#[A-Z]\.\d/x"),
    ],
)
def test_placeholders_and_literals(mask: str, pattern: str) -> None:
    for seed in range(20):
        assert re.fullmatch(pattern, generate_number(mask, NOW, random.Random(seed)))


def test_dates_are_zero_padded_from_now() -> None:
    now = datetime(2009, 1, 2, tzinfo=UTC)
    assert generate_number("%y/%m/%d-%n", now, random.Random(1))[:9] == "09/01/02-"


def test_a_seeded_rng_repeats() -> None:
    first = generate_number("%A%a%n%n%n", NOW, random.Random(42))
    assert generate_number("%A%a%n%n%n", NOW, random.Random(42)) == first


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ("%x", "unknown placeholder %x"),
        ("%n%N", "unknown placeholder %N"),
        ("%n%", "a trailing %"),
        ("", "no random part"),
        ("TICKET", "no random part"),
        ("%y%m%d", "no random part"),
        ("%%n", "no random part"),
        ("%n %n", "may not be part"),
        ("[%n]", "may not be part"),
        ("%n\n", "may not be part"),
        ("%n\x00", "may not be part"),
    ],
)
def test_invalid_masks_are_refused_with_a_reason(mask: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_mask(mask)
    with pytest.raises(ValueError, match=re.escape(message)):
        generate_number(mask, NOW)
    with pytest.raises(ValueError, match=re.escape(message)):
        mask_capacity(mask)


@pytest.mark.parametrize("mask", [DEFAULT_MASK, "%A%a%n", "T-%y%m%d-%n%n%n%n", "%%%n"])
def test_valid_masks_pass(mask: str) -> None:
    validate_mask(mask)


@pytest.mark.parametrize(
    ("mask", "capacity"),
    [
        (DEFAULT_MASK, 10**6),
        ("%n", 10),
        ("%A%a%n", 26 * 26 * 10),
        ("X-%y%m%d-%n%n", 100),
        ("%%%A", 26),
    ],
)
def test_capacity(mask: str, capacity: int) -> None:
    assert mask_capacity(mask) == capacity


def test_digits_are_spread_evenly() -> None:
    counts = Counter(generate_number("%n", NOW) for _ in range(10_000))
    assert set(counts) == set("0123456789")
    # 1,000 expected each; the standard deviation is 30, so this fails about never.
    assert all(800 < count < 1200 for count in counts.values())


def test_letters_cover_the_alphabet() -> None:
    drawn = {generate_number("%A%a", NOW) for _ in range(5_000)}
    assert {text[0] for text in drawn} == set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert {text[1] for text in drawn} == set("abcdefghijklmnopqrstuvwxyz")


def test_default_numbers_rarely_collide() -> None:
    numbers = [generate_number(DEFAULT_MASK, NOW) for _ in range(2_000)]
    # About two collisions are expected among 2,000 draws from a million.
    assert len(set(numbers)) > 1_980
