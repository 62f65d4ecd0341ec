"""The OpenAPI document and UI (served locally), and the migrations matching the models."""

from __future__ import annotations

import re
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from server.db import create_engine
from server.domain.base import Base
from server.models import import_all_models


async def test_openapi_document_lists_every_collection(fx_api: Any) -> None:
    response = await fx_api.client.get("/schema/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for collection in ("customers", "contacts", "opportunities", "service-records", "activities"):
        assert f"/api/v1/{collection}" in paths
        assert f"/api/v1/{collection}/{{record_id}}" in paths
    assert "/api/v1/customers/{customer_id}/360" in paths
    assert "bearer" in response.json()["components"]["securitySchemes"]


async def test_docs_ui_loads_no_external_assets(fx_api: Any) -> None:
    page = await fx_api.client.get("/schema/")
    assert page.status_code == 200
    external = re.findall(r"""(?:src|href)=["'](https?://[^"']+)""", page.text)
    assert external == []
    for asset in re.findall(r"""(?:src|href)=["'](/static/[^"']+)""", page.text):
        assert (await fx_api.client.get(asset)).status_code == 200


async def test_migrations_match_models(fx_database_url: str) -> None:
    import_all_models()
    engine = create_engine(fx_database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
            version = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    finally:
        await engine.dispose()
    assert version is not None
    assert differences == []
