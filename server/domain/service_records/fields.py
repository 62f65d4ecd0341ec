"""Service record field declarations."""

from server.domain.fields import Classification, EntitySpec, FieldSpec, MaskFormat, ValueKind, record_fields

SERVICE_RECORD = EntitySpec(
    "service_record",
    record_fields(
        FieldSpec("customer_id", ValueKind.UUID, Classification.PUBLIC, filterable=True),
        FieldSpec("contact_id", ValueKind.UUID, Classification.PUBLIC, filterable=True),
        FieldSpec("type", filterable=True),
        FieldSpec("priority", filterable=True, sortable=True),
        FieldSpec("status", filterable=True, sortable=True),
        FieldSpec("owner_id", ValueKind.UUID, filterable=True),
        FieldSpec("description", classification=Classification.SENSITIVE, mask=MaskFormat.REDACT, encrypted=True),
        FieldSpec("resolution", classification=Classification.SENSITIVE, mask=MaskFormat.REDACT, encrypted=True),
        FieldSpec("satisfaction", ValueKind.INTEGER),
        FieldSpec("first_response_due", ValueKind.DATETIME, sortable=True),
        FieldSpec("resolution_due", ValueKind.DATETIME, sortable=True),
        FieldSpec("first_responded_at", ValueKind.DATETIME),
        FieldSpec("resolved_at", ValueKind.DATETIME),
        FieldSpec("closed_at", ValueKind.DATETIME),
    ),
)
