"""Blind indexes and normalisers: equal spellings index alike, different values and fields do not."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from server.security.crypto import (
    BlindIndexer,
    Keyring,
    NormalisationError,
    PhoneNormaliser,
    Suite,
    normalise_email,
    normalise_national_id,
    normalise_phone,
    normalise_text,
)


def _fullwidth(text: str) -> str:
    """The full-width forms a Chinese input method produces (U+FF01..U+FF5E for ASCII 0x21..0x7E)."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


@pytest.mark.parametrize(
    "spellings",
    [
        ["138 0013 8000", "+86 138-0013-8000", "13800138000", "0086 138 0013 8000", "+86 (138) 0013.8000",
         _fullwidth("13800138000"), "+8613800138000"],
        ["010 1234 5678", "+86 10 1234 5678", "+86 010 1234 5678", "(010) 12345678", "+86 (0)10-12345678"],
        ["+44 20 7946 0958", "0044 20 7946 0958", "+44 (0)20 7946 0958"],
    ],
)
def test_phone_spellings_normalise_equal(spellings: list[str]) -> None:
    assert len({normalise_phone(spelling) for spelling in spellings}) == 1


def test_phone_e164_form() -> None:
    assert normalise_phone("138 0013 8000") == "+8613800138000"
    assert normalise_phone("010 1234 5678") == "+861012345678"


@pytest.mark.parametrize(("left", "right"), [("13800138000", "13800138001"), ("+8613800138000", "+4413800138000"),
                                             ("13800138000", "+13800138000")])
def test_different_phones_differ(left: str, right: str) -> None:
    assert normalise_phone(left) != normalise_phone(right)


def test_phone_default_country_is_configurable() -> None:
    nanp = PhoneNormaliser("+1", trunk_prefix="1", international_prefix="011")
    assert nanp("(415) 555-0100") == nanp("1 415 555 0100") == nanp("+1 415-555-0100") == "+14155550100"
    assert nanp("011 86 138 0013 8000") == "+8613800138000"
    assert normalise_phone("020 7946 0958", default_country_code="+44") == "+442079460958"
    with pytest.raises(ValueError, match="country_code"):
        PhoneNormaliser("86")


@pytest.mark.parametrize("value", ["", "   ", "call me", "138-0013-800O", "+", "123", "+1234567890123456", "1+2"])
def test_not_phone_numbers(value: str) -> None:
    with pytest.raises(NormalisationError) as raised:
        normalise_phone(value)
    if len(value.strip()) > 3:
        assert value not in str(raised.value)  # never echo PII in an error


def test_email_normalisation() -> None:
    spellings = ["Zhang.Wei@Example.COM", "  zhang.wei@example.com\t", _fullwidth("ZHANG") + ".wei@example.com"]
    assert {normalise_email(spelling) for spelling in spellings} == {"zhang.wei@example.com"}
    assert normalise_email("zhang.wei@example.com") != normalise_email("zhangwei@example.com")
    assert normalise_email("a@example.com") != normalise_email("a@example.org")
    for bad in ["", "no-at-sign", "@example.com", "a@", "a b@example.com"]:
        with pytest.raises(NormalisationError):
            normalise_email(bad)


def test_national_id_normalisation() -> None:
    assert normalise_national_id(" 11010519491231002x ") == "11010519491231002X"
    assert normalise_national_id("110105 19491231 002X") == "11010519491231002X"
    assert normalise_national_id("123-45-6789") == normalise_national_id("123456789")
    assert normalise_national_id("110105194912310021") != normalise_national_id("110105194912310022")
    for bad in ["", "  ", "1101*0519"]:
        with pytest.raises(NormalisationError):
            normalise_national_id(bad)


def test_text_normalisation() -> None:
    assert normalise_text(_fullwidth("  W") + "idget ") == "Widget"
    with pytest.raises(NormalisationError):
        normalise_text(" ")


def test_index_is_equal_for_equal_spellings_and_int32(keyring: Keyring) -> None:
    indexer = keyring.blind_indexer()
    first = indexer.index("contact", "phone", "138 0013 8000", normaliser=normalise_phone)
    second = indexer.index("contact", "phone", "+86 138-0013-8000", normaliser=normalise_phone)
    assert first == second
    assert -(2**31) <= first < 2**31
    assert first != indexer.index("contact", "phone", "13800138001", normaliser=normalise_phone)


def test_fields_and_keys_separate_indexes(keyring: Keyring) -> None:
    indexer = keyring.blind_indexer()
    phone = indexer.index("contact", "phone", "13800138000", normaliser=normalise_phone)
    assert phone != indexer.index("contact", "mobile", "13800138000", normaliser=normalise_phone)
    assert phone != indexer.index("customer", "phone", "13800138000", normaliser=normalise_phone)
    other = Keyring.generate(keyring.suite).blind_indexer()
    assert phone != other.index("contact", "phone", "13800138000", normaliser=normalise_phone)


def test_suites_give_different_indexes() -> None:
    root = os.urandom(32)
    aes = BlindIndexer(root, Suite.AES256GCM_HMAC_SHA256).index("contact", "email", "a@example.com")
    sm = BlindIndexer(root, Suite.SM4GCM_HMAC_SM3).index("contact", "email", "a@example.com")
    assert aes != sm


@pytest.mark.parametrize(("suite", "algorithm"), [(Suite.AES256GCM_HMAC_SHA256, hashes.SHA256()),
                                                  (Suite.SM4GCM_HMAC_SM3, hashes.SM3())])
def test_known_answer_derivation(suite: Suite, algorithm: hashes.HashAlgorithm) -> None:
    """The index is the first 4 bytes (signed, big-endian) of HMAC(HKDF(root, info), normalised value)."""
    root = bytes(range(32))
    field_key = HKDF(algorithm, 32, None, b"strongroom-bidx|contact.email").derive(root)
    if isinstance(algorithm, hashes.SHA256):
        digest = hmac.new(field_key, b"a@example.com", hashlib.sha256).digest()
    else:
        digest = hmac.new(field_key, b"a@example.com", "sm3").digest()
    expected = int.from_bytes(digest[:4], "big", signed=True)
    indexer = BlindIndexer(root, suite)
    assert indexer.index("contact", "email", "A@Example.com ", normaliser=normalise_email) == expected


@pytest.mark.parametrize(("entity", "field"), [("contact.x", "y"), ("Contact", "phone"), ("contact", ""),
                                                ("contact", "a|b")])
def test_ambiguous_names_refused(entity: str, field: str) -> None:
    with pytest.raises(ValueError, match="identifiers"):
        BlindIndexer(os.urandom(32), Suite.AES256GCM_HMAC_SHA256).index(entity, field, "v")


def test_truncation_collides_as_the_math_says() -> None:
    """With 16-bit slices of the index, 2,000 values give about C(2000,2)/2**16 = 30 colliding pairs."""
    indexer = BlindIndexer(bytes(32), Suite.AES256GCM_HMAC_SHA256)
    values = [indexer.index("contact", "email", f"user{number}@example.com") & 0xFFFF for number in range(2000)]
    pairs = sum(count * (count - 1) // 2 for count in (values.count(value) for value in set(values)))
    assert 10 <= pairs <= 60
