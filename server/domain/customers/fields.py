"""Customer field declarations."""

from server.domain.fields import Classification, EntitySpec, FieldSpec, MaskFormat, ValueKind, record_fields

CUSTOMER = EntitySpec(
    "customer",
    record_fields(
        FieldSpec("name", classification=Classification.INTERNAL, mask=MaskFormat.PERSON_NAME, sortable=True),
        FieldSpec("kind", filterable=True),
        FieldSpec("industry", filterable=True),
        FieldSpec("region", filterable=True),
        FieldSpec("tier", filterable=True),
        FieldSpec("lifecycle_stage", filterable=True, sortable=True),
        FieldSpec("source_channel", filterable=True),
        FieldSpec("owner_id", ValueKind.UUID, filterable=True),
        FieldSpec("org_unit_id", ValueKind.UUID, filterable=True),
        FieldSpec("tax_id", classification=Classification.SENSITIVE, mask=MaskFormat.LAST_FOUR, encrypted=True),
        FieldSpec("tags", ValueKind.TEXT_LIST),
        FieldSpec("notes", classification=Classification.INTERNAL, mask=MaskFormat.REDACT),
    ),
)
