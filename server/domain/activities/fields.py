"""Activity field declarations."""

from server.domain.fields import Classification, EntitySpec, FieldSpec, MaskFormat, ValueKind, record_fields

ACTIVITY = EntitySpec(
    "activity",
    record_fields(
        FieldSpec("customer_id", ValueKind.UUID, Classification.PUBLIC, filterable=True),
        FieldSpec("contact_id", ValueKind.UUID, Classification.PUBLIC, filterable=True),
        FieldSpec("opportunity_id", ValueKind.UUID, Classification.PUBLIC, filterable=True),
        FieldSpec("service_record_id", ValueKind.UUID, Classification.PUBLIC, filterable=True),
        FieldSpec("kind", filterable=True),
        FieldSpec("occurred_at", ValueKind.DATETIME, sortable=True),
        FieldSpec("owner_id", ValueKind.UUID, filterable=True),
        FieldSpec("summary", mask=MaskFormat.REDACT),
    ),
)
