"""Masked values show exactly what their format allows: exact outputs, then properties over many inputs."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain.contacts.fields import CONTACT
from server.domain.customers.fields import CUSTOMER
from server.domain.fields import MaskFormat
from server.security.policy import (
    REDACTED,
    FieldMask,
    RecordScope,
    Visibility,
    apply_field_mask,
    build_enforcer,
    compile_field_mask,
    render_mask,
)


@pytest.mark.parametrize(
    ("fmt", "value", "expected"),
    [
        (MaskFormat.PHONE, "13800138000", "138****8000"),
        (MaskFormat.PHONE, "+86 138 0013 8000", "861******8000"),
        (MaskFormat.PHONE, "138-0013-8000", "138****8000"),
        (MaskFormat.PHONE, "(010) 6234 5678", "010****5678"),
        (MaskFormat.PHONE, "\uff11\uff13\uff18\uff10\uff10\uff11\uff13\uff18\uff10\uff10\uff10",
         "\uff11\uff13\uff18****\uff18\uff10\uff10\uff10"),  # full-width digits
        (MaskFormat.PHONE, 13800138000, "138****8000"),
        (MaskFormat.PHONE, "6234 5678", "***"),
        (MaskFormat.PHONE, "1380013800", "***"),
        (MaskFormat.PHONE, "call me maybe", "***"),
        (MaskFormat.PHONE, "1", "***"),
        (MaskFormat.PHONE, "", ""),
        (MaskFormat.EMAIL, "zhang.san@example.com", "z***@example.com"),
        (MaskFormat.EMAIL, "a@b.co", "a***@b.co"),
        (MaskFormat.EMAIL, " Zhang@Example.com ", "Z***@Example.com"),
        (MaskFormat.EMAIL, '"john@home"@example.com', '"***@example.com'),
        (MaskFormat.EMAIL, "张三@例子.中国", "张***@例子.中国"),
        (MaskFormat.EMAIL, "no-at-sign.example.com", "***"),
        (MaskFormat.EMAIL, "@example.com", "***"),
        (MaskFormat.EMAIL, "user@", "***"),
        (MaskFormat.EMAIL, "@", "***"),
        (MaskFormat.EMAIL, "x", "***"),
        (MaskFormat.EMAIL, "", ""),
        (MaskFormat.LAST_FOUR, "110101199003071234", "**************1234"),
        (MaskFormat.LAST_FOUR, "91310000MA1FL0XX3K", "**************XX3K"),
        (MaskFormat.LAST_FOUR, "12345678", "****5678"),
        (MaskFormat.LAST_FOUR, "1234567", "*******"),
        (MaskFormat.LAST_FOUR, "123", "***"),
        (MaskFormat.LAST_FOUR, Decimal("123456789.12"), "********9.12"),
        (MaskFormat.LAST_FOUR, "", ""),
        (MaskFormat.PERSON_NAME, "张三丰", "张**"),
        (MaskFormat.PERSON_NAME, "张三", "张*"),
        (MaskFormat.PERSON_NAME, "张", "*"),
        (MaskFormat.PERSON_NAME, "欧阳娜娜", "欧***"),
        (MaskFormat.PERSON_NAME, "山田 太郎", "山***"),
        (MaskFormat.PERSON_NAME, "Anna Schmidt", "* Schmidt"),
        (MaskFormat.PERSON_NAME, "Anna Maria  Schmidt", "* * Schmidt"),
        (MaskFormat.PERSON_NAME, "Schmidt, Anna", "Schmidt, *"),
        (MaskFormat.PERSON_NAME, ", Anna", "*"),
        (MaskFormat.PERSON_NAME, "Madonna", "M******"),
        (MaskFormat.PERSON_NAME, "A", "*"),
        (MaskFormat.PERSON_NAME, "   ", ""),
        (MaskFormat.PERSON_NAME, "", ""),
        (MaskFormat.REDACT, "Prefers calls after 6pm; diabetic.", REDACTED),
        (MaskFormat.REDACT, "", REDACTED),
        (MaskFormat.REDACT, Decimal("18000.5000"), REDACTED),
        (MaskFormat.REDACT, datetime.date(2027, 1, 15), REDACTED),
        (MaskFormat.NONE, "not maskable", REDACTED),
    ],
)
def test_exact_outputs(fmt: MaskFormat, value: object, expected: str) -> None:
    assert render_mask(fmt, value) == expected


@pytest.mark.parametrize("fmt", list(MaskFormat))
def test_none_stays_none(fmt: MaskFormat) -> None:
    assert render_mask(fmt, None) is None


def test_non_strings_are_rendered_with_str_first() -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert render_mask(MaskFormat.LAST_FOUR, value) == "*" * 32 + "5678"
    assert render_mask(MaskFormat.LAST_FOUR, datetime.date(2027, 1, 15)) == "******1-15"


# -- properties ---------------------------------------------------------------------------------------------

_DIGITS = st.text(alphabet="0123456789", min_size=11, max_size=20)
_SEPARATORS = st.sampled_from(["", " ", "-", "+", "(", ")", ".", "/"])


@given(digits=_DIGITS, separators=st.lists(_SEPARATORS, min_size=21, max_size=21))
def test_phone_shows_first_three_and_last_four_digits_only(digits: str, separators: list[str]) -> None:
    formatted = "".join(sep + digit for sep, digit in zip(separators, digits, strict=False))
    masked = render_mask(MaskFormat.PHONE, formatted)
    assert masked == digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


@given(text=st.text(max_size=40))
def test_phone_always_hides_at_least_four_digits(text: str) -> None:
    masked = render_mask(MaskFormat.PHONE, text)
    assert masked is not None
    digits = [char for char in text if char.isdecimal()]
    shown = [char for char in masked if char != "*"]
    assert all(char.isdecimal() for char in shown)
    assert len(shown) <= max(0, len(digits) - 4)
    if shown:  # what is shown is a prefix and a suffix of the digits, in order, nothing from the middle
        assert shown == digits[:3] + digits[-4:]


_LOCAL = st.text(st.characters(exclude_characters="@", exclude_categories=["Cs"]), min_size=1, max_size=30)
_DOMAIN = st.from_regex(r"[a-z0-9-]{1,20}\.[a-z]{2,6}", fullmatch=True)


@given(local=_LOCAL, domain=_DOMAIN)
def test_email_shows_first_character_and_domain_only(local: str, domain: str) -> None:
    masked = render_mask(MaskFormat.EMAIL, f"{local}@{domain}")
    stripped_local = local.lstrip()
    if not stripped_local:
        assert masked == "***"
    else:
        assert masked == f"{stripped_local[0]}***@{domain}"


@given(text=st.text(max_size=60))
def test_email_never_shows_more_than_one_character_before_the_at(text: str) -> None:
    masked = render_mask(MaskFormat.EMAIL, text)
    assert masked is not None
    if masked not in ("", "***"):
        shown_local, _, shown_domain = masked.partition("***@")
        assert len(shown_local) == 1
        assert text.strip().endswith("@" + shown_domain)


@given(text=st.text(min_size=1, max_size=40))
def test_last_four_keeps_length_and_hides_all_but_four(text: str) -> None:
    masked = render_mask(MaskFormat.LAST_FOUR, text)
    assert masked is not None
    assert len(masked) == len(text)
    if len(text) < 8:
        assert set(masked) == {"*"}
    else:
        assert masked == "*" * (len(text) - 4) + text[-4:]


_LATIN_WORD = st.from_regex(r"[A-Z][a-z]{1,12}", fullmatch=True)


@given(words=st.lists(_LATIN_WORD, min_size=2, max_size=5))
def test_latin_names_keep_only_the_last_word(words: list[str]) -> None:
    masked = render_mask(MaskFormat.PERSON_NAME, " ".join(words))
    assert masked == " ".join(["*"] * (len(words) - 1) + [words[-1]])


_CJK_NAME = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=2, max_size=6)


@given(name=_CJK_NAME)
def test_cjk_names_keep_only_the_first_character(name: str) -> None:
    masked = render_mask(MaskFormat.PERSON_NAME, name)
    assert masked == name[0] + "*" * (len(name) - 1)


_NON_CJK_TEXT = st.text(st.characters(max_codepoint=0x2FFF, exclude_categories=["Cs"]), max_size=40)


@given(text=_NON_CJK_TEXT)
def test_person_name_shows_only_the_surname(text: str) -> None:
    masked = render_mask(MaskFormat.PERSON_NAME, text)
    assert masked is not None
    if "," in text:  # "Surname, Given": only what precedes the comma
        surname = text.strip().split(",", 1)[0].strip()
        assert masked == (f"{surname}, *" if surname else "*")
    else:
        visible = [word for word in masked.split() if set(word) != {"*"}]
        words = text.split()
        assert len(visible) <= 1
        if visible and len(words) > 1:
            assert visible == [words[-1]]
        elif visible:  # one word: its first character only
            assert visible[0].rstrip("*") == words[0][0] or visible[0] == words[0][0]


@settings(max_examples=200)
@given(fmt=st.sampled_from(list(MaskFormat)), text=st.text(st.characters(exclude_characters="*"), max_size=50))
def test_every_format_renders_any_text(fmt: MaskFormat, text: str) -> None:
    masked = render_mask(fmt, text)
    assert isinstance(masked, str)
    if fmt in (MaskFormat.REDACT, MaskFormat.NONE):
        assert masked == REDACTED
    elif len(text) >= 12 and fmt is not MaskFormat.EMAIL:
        assert masked != text  # a long enough value is never shown unchanged


# -- applying a mask to a record ----------------------------------------------------------------------------


def test_apply_field_mask_shows_clear_renders_masked_and_drops_the_rest() -> None:
    enforcer = build_enforcer(
        [
            ("agent", "contact", "read", "allow"),
            ("agent", "contact.name", "read", "allow"),
            ("agent", "contact.phone", "mask", "allow"),
        ]
    )
    mask = compile_field_mask(enforcer, ("agent",), CONTACT, ())
    record = {"id": "c1", "name": "林小明", "phone": "13912345678", "email": "lin@example.com",
              "national_id": "110101199003074512", "smuggled": "x"}
    assert apply_field_mask(mask, CONTACT, record) == {"id": "c1", "name": "林小明", "phone": "139****5678"}


def test_apply_field_mask_refuses_a_mask_of_another_entity() -> None:
    mask = FieldMask("customer", {}, frozenset(), frozenset(), frozenset(), RecordScope.NONE)
    with pytest.raises(ValueError, match="customer field mask"):
        apply_field_mask(mask, CONTACT, {"id": "c1"})
    assert apply_field_mask(mask, CUSTOMER, {"id": "c1"}) == {}
    assert mask.visibility.get("id", Visibility.HIDDEN) is Visibility.HIDDEN
