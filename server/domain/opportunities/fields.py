"""Opportunity field declarations."""

from server.domain.fields import Classification, EntitySpec, FieldSpec, MaskFormat, ValueKind, record_fields

OPPORTUNITY = EntitySpec(
    "opportunity",
    record_fields(
        FieldSpec("customer_id", ValueKind.UUID, Classification.PUBLIC, filterable=True),
        FieldSpec("title", sortable=True),
        FieldSpec("amount", ValueKind.DECIMAL, Classification.SENSITIVE, mask=MaskFormat.REDACT, sortable=True),
        FieldSpec("currency", filterable=True),
        FieldSpec("stage", filterable=True, sortable=True),
        FieldSpec("probability", ValueKind.INTEGER, sortable=True),
        FieldSpec("expected_close_date", ValueKind.DATE),
        FieldSpec("owner_id", ValueKind.UUID, filterable=True),
        FieldSpec("loss_reason", mask=MaskFormat.REDACT),
        FieldSpec("closed_at", ValueKind.DATETIME),
    ),
)
