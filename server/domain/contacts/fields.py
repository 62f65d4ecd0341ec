"""Contact field declarations."""

from server.domain.fields import Classification, EntitySpec, FieldSpec, MaskFormat, ValueKind, record_fields

CONTACT = EntitySpec(
    "contact",
    record_fields(
        FieldSpec("customer_id", ValueKind.UUID, Classification.PUBLIC, filterable=True),
        FieldSpec("name", classification=Classification.PII, mask=MaskFormat.PERSON_NAME, sortable=True),
        FieldSpec("title"),
        FieldSpec("phone", classification=Classification.PII, mask=MaskFormat.PHONE, encrypted=True,
                  blind_indexed=True),
        FieldSpec("mobile", classification=Classification.PII, mask=MaskFormat.PHONE, encrypted=True,
                  blind_indexed=True),
        FieldSpec("email", classification=Classification.PII, mask=MaskFormat.EMAIL, encrypted=True,
                  blind_indexed=True),
        FieldSpec("address", classification=Classification.PII, mask=MaskFormat.REDACT, encrypted=True),
        FieldSpec("national_id", classification=Classification.SENSITIVE, mask=MaskFormat.LAST_FOUR, encrypted=True,
                  blind_indexed=True),
        FieldSpec("marketing_consent", ValueKind.BOOLEAN, filterable=True),
        FieldSpec("consent_at", ValueKind.DATETIME),
        FieldSpec("consent_source"),
    ),
)
