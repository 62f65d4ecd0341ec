"""Normalisers: the canonical spelling of a value before it is blind-indexed.

Two spellings of the same email, phone number or national id must produce the same blind index, so the
HMAC is taken over the normalised value. Every normaliser starts with Unicode NFKC, which folds full-width
digits and letters (common from Chinese input methods) to ASCII. Error messages never echo the value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from server.security.crypto.errors import NormalisationError

__all__ = [
    "Normaliser",
    "PhoneNormaliser",
    "normalise_email",
    "normalise_national_id",
    "normalise_phone",
    "normalise_text",
]

Normaliser = Callable[[str], str]

_PHONE_SEPARATORS = re.compile(r"[\s\-.()/]")
_NATIONAL_ID_SEPARATORS = re.compile(r"[\s\-]")
_E164_MIN_DIGITS = 7  # the shortest numbering plans in use (for example Niue, +683 and four digits)
_E164_MAX_DIGITS = 15


def _nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip()


def normalise_text(value: str) -> str:
    """NFKC and surrounding whitespace removed; the default for fields with no specific rule.

    Raises:
        NormalisationError: Nothing is left.
    """
    text = _nfkc(value)
    if not text:
        raise NormalisationError("value is empty")
    return text


def normalise_email(value: str) -> str:
    """NFKC, surrounding whitespace removed, case-folded (``Zhang.Wei@Example.COM`` -> ``zhang.wei@example.com``).

    The local part is folded too: mail systems treat it case-insensitively in practice, and a missed duplicate
    costs more than a merged one that the caller then compares in clear.

    Raises:
        NormalisationError: Not of the form ``local@domain``.
    """
    email = _nfkc(value).casefold()
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or any(char.isspace() for char in email):
        raise NormalisationError("not an email address")
    return email


def normalise_national_id(value: str) -> str:
    """NFKC, whitespace and hyphens removed, upper case (a Chinese id's check letter ``x`` becomes ``X``).

    Raises:
        NormalisationError: Empty, or contains characters other than letters and digits.
    """
    national_id = _NATIONAL_ID_SEPARATORS.sub("", _nfkc(value)).upper()
    if not national_id or not national_id.isalnum():
        raise NormalisationError("not a national id")
    return national_id


class PhoneNormaliser:
    """Phone numbers to E.164 (``+8613800138000``), numbers without a country code taking the default one.

    Rules, in order: NFKC; drop ``(0)``; drop spaces, hyphens, dots, parentheses and slashes; a leading ``+``
    or international prefix (``00``) means the country code is present; otherwise strip one trunk prefix
    (``0``) and prepend the default country code. A trunk prefix written after the default country code
    (``+86 010 ...``) is dropped too, since national numbers never start with their own trunk prefix.
    No numbering-plan tables: a wrong but well-formed number is normalised, not rejected.

    Args:
        default_country_code: For example ``"+86"`` or ``"+1"``.
        trunk_prefix: The default country's trunk prefix: ``"0"`` for most, ``"1"`` for ``+1``, ``""`` for none.
        international_prefix: The dialling prefix that replaces ``+`` (``"00"`` in China and Europe).
    """

    __slots__ = ("_country_digits", "_international_prefix", "_trunk_prefix")

    def __init__(
        self, default_country_code: str = "+86", *, trunk_prefix: str = "0", international_prefix: str = "00"
    ) -> None:
        digits = default_country_code.removeprefix("+")
        if not (default_country_code.startswith("+") and digits.isascii() and digits.isdigit() and len(digits) <= 3):
            raise ValueError(f"default_country_code must look like '+86', got {default_country_code!r}")
        for name, prefix in (("trunk_prefix", trunk_prefix), ("international_prefix", international_prefix)):
            if prefix and not (prefix.isascii() and prefix.isdigit()):
                raise ValueError(f"{name} must be digits, got {prefix!r}")
        self._country_digits = digits
        self._trunk_prefix = trunk_prefix
        self._international_prefix = international_prefix

    def __call__(self, value: str) -> str:
        """Normalise one phone number.

        Raises:
            NormalisationError: Anything but digits and separators, or too few or too many digits for E.164.
        """
        number = _PHONE_SEPARATORS.sub("", _nfkc(value).replace("(0)", ""))
        if number.startswith("+"):
            digits = number[1:]
        elif self._international_prefix and number.startswith(self._international_prefix):
            digits = number[len(self._international_prefix) :]
        else:
            if self._trunk_prefix and number.startswith(self._trunk_prefix):
                number = number[len(self._trunk_prefix) :]
            digits = self._country_digits + number
        if not (digits.isascii() and digits.isdigit()):
            raise NormalisationError("not a phone number: only digits, '+' and separators are allowed")
        own_trunk = self._country_digits + self._trunk_prefix
        if self._trunk_prefix and digits.startswith(own_trunk):
            digits = self._country_digits + digits[len(own_trunk) :]
        if not _E164_MIN_DIGITS <= len(digits) <= _E164_MAX_DIGITS:
            raise NormalisationError(f"not a phone number: E.164 allows {_E164_MIN_DIGITS}-{_E164_MAX_DIGITS} digits")
        return "+" + digits


_DEFAULT_PHONE = PhoneNormaliser()


def normalise_phone(value: str, default_country_code: str = "+86") -> str:
    """Normalise a phone number to E.164 with ``PhoneNormaliser`` (trunk prefix ``0``, international ``00``).

    ``"138 0013 8000"``, ``"+86 138-0013-8000"`` and ``"0086 13800138000"`` all give ``"+8613800138000"``.

    Raises:
        NormalisationError: Not a phone number.
    """
    normaliser = _DEFAULT_PHONE if default_country_code == "+86" else PhoneNormaliser(default_country_code)
    return normaliser(value)
