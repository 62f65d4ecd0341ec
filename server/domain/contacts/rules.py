"""Contact business rules."""

from __future__ import annotations

import re

from server.domain.customers.models import CustomerKind
from server.errors import InvalidInput

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()\-]{4,30}$")
_NATIONAL_ID = re.compile(r"^[0-9A-Za-z\- ]{4,32}$")


def check_contact_fields(values: dict[str, object], customer_kind: str) -> None:
    """Validate formats and the rules that depend on the customer.

    Messages name the field but never echo its value: a rejected value may be personal data.
    """
    email = values.get("email")
    if isinstance(email, str) and not _EMAIL.match(email):
        raise InvalidInput("email is not a valid e-mail address", field="email")
    for field in ("phone", "mobile"):
        number = values.get(field)
        if isinstance(number, str) and not _PHONE.match(number):
            raise InvalidInput(f"{field} is not a valid phone number", field=field)
    national_id = values.get("national_id")
    if isinstance(national_id, str):
        if not _NATIONAL_ID.match(national_id):
            raise InvalidInput("national_id is not a valid identity number", field="national_id")
        if customer_kind != CustomerKind.INDIVIDUAL:
            raise InvalidInput("national_id is kept only for contacts of individual customers", field="national_id")
    if values.get("marketing_consent") is True and not values.get("consent_source"):
        raise InvalidInput("consent_source is required when marketing_consent is given", field="consent_source")
