"""Rendering masked values, and applying a field mask to one record.

Each format shows at most what its rule below says and nothing else; everything hidden becomes ``*``.
Common to all formats: ``None`` stays ``None`` (absence is not a secret); other non-string values (``Decimal``,
``date``) are rendered with ``str()`` first; the empty string stays empty, except under ``REDACT``.

``PHONE``
    Only the decimal digits count (spaces, ``+``, dashes, brackets are dropped, so ``+86 138 0013 8000`` is
    masked as ``8613800138000`` -> ``861******8000``). With 11 or more digits: the first 3 and the last 4
    digits, one ``*`` per hidden digit (``13800138000`` -> ``138****8000``), so at least 4 stay hidden.
    With fewer digits (short landlines, extensions, junk): ``***``, nothing shown.
``EMAIL``
    First character of the local part, ``***``, ``@`` and the domain (``zhang.san@example.com`` ->
    ``z***@example.com``). The split is at the *last* ``@``. Surrounding whitespace is dropped. Without a
    local part or a domain: ``***``. The star count is fixed, so the length of the local part is not shown.
``LAST_FOUR``
    One ``*`` per character but the last 4 (length kept: ``110101199003071234`` -> ``**************1234``).
    Values shorter than 8 characters are all stars, so at least 4 characters always stay hidden.
``PERSON_NAME``
    Surname kept, given names hidden:
    a name with CJK characters (surname first, spaces ignored) keeps its first character and gets one ``*``
    per further character (``张三丰`` -> ``张**``; ``欧阳娜娜`` -> ``欧***``, compound surnames are cut);
    ``Surname, Given`` keeps what precedes the comma (``Schmidt, Anna`` -> ``Schmidt, *``);
    other names keep the last word and replace every other word with one ``*`` (``Anna Maria Schmidt`` ->
    ``* * Schmidt``); a single word keeps its first character (``Madonna`` -> ``M******``); a single
    character becomes ``*``.
``REDACT``
    Always ``[redacted]``.
``NONE``
    Not maskable; the compiler never marks such a field masked. Rendered as ``[redacted]`` should it happen.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Final

from server.domain.fields import EntitySpec, FieldSpec, MaskFormat
from server.security.policy.field_mask import FieldMask, Visibility

REDACTED: Final = "[redacted]"
_MIN_PHONE_DIGITS: Final = 11
_MIN_LAST_FOUR_LENGTH: Final = 8
_EMAIL_STARS: Final = "***"
# CJK Unified Ideographs (with extension A and compatibility ideographs), Hangul syllables, kana.
_CJK: Final = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _phone(text: str) -> str:
    digits = [char for char in text if char.isdecimal()]
    if len(digits) < _MIN_PHONE_DIGITS:
        return "***"
    return "".join(digits[:3]) + "*" * (len(digits) - 7) + "".join(digits[-4:])


def _email(text: str) -> str:
    local, at, domain = text.strip().rpartition("@")
    if not at or not local or not domain:
        return _EMAIL_STARS
    return f"{local[0]}{_EMAIL_STARS}@{domain}"


def _last_four(text: str) -> str:
    if len(text) < _MIN_LAST_FOUR_LENGTH:
        return "*" * len(text)
    return "*" * (len(text) - 4) + text[-4:]


def _person_name(text: str) -> str:
    name = text.strip()
    if _CJK.search(name):
        compact = "".join(name.split())
        return compact[0] + "*" * (len(compact) - 1) if len(compact) > 1 else "*"
    if "," in name:
        surname = name.split(",", 1)[0].strip()
        return f"{surname}, *" if surname else "*"
    words = name.split()
    if not words:
        return ""
    if len(words) == 1:
        word = words[0]
        return word[0] + "*" * (len(word) - 1) if len(word) > 1 else "*"
    return " ".join(["*"] * (len(words) - 1) + [words[-1]])


_RENDERERS: Final[Mapping[MaskFormat, Callable[[str], str]]] = {
    MaskFormat.PHONE: _phone,
    MaskFormat.EMAIL: _email,
    MaskFormat.LAST_FOUR: _last_four,
    MaskFormat.PERSON_NAME: _person_name,
}


def render_mask(fmt: MaskFormat, value: object) -> str | None:
    """Render ``value`` masked with ``fmt`` (rules in the module docstring); ``None`` stays ``None``."""
    if value is None:
        return None
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        return REDACTED
    text = value if isinstance(value, str) else str(value)
    if not text:
        return ""
    return renderer(text)


@cache
def _specs_by_name(entity: EntitySpec) -> Mapping[str, FieldSpec]:
    return {spec.name: spec for spec in entity.fields}


def apply_field_mask(field_mask: FieldMask, entity: EntitySpec, record: Mapping[str, object]) -> dict[str, object]:
    """The record as ``field_mask`` lets it be shown.

    Clear fields as they are, masked ones rendered, the rest left out. Keys the entity does not declare, or
    that the mask does not cover, are dropped (fail closed).

    Raises:
        ValueError: The mask was compiled for another entity.
    """
    if field_mask.entity != entity.name:
        raise ValueError(f"a {field_mask.entity} field mask cannot filter a {entity.name} record")
    specs = _specs_by_name(entity)
    shown: dict[str, object] = {}
    for name, value in record.items():
        visibility = field_mask.visibility.get(name, Visibility.HIDDEN)
        spec = specs.get(name)
        if spec is None or visibility is Visibility.HIDDEN:
            continue
        shown[name] = value if visibility is Visibility.CLEAR else render_mask(spec.mask, value)
    return shown
