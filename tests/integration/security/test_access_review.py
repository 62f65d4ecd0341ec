"""The access review a security administrator signs: generated from the policy in the database."""

from __future__ import annotations

from typing import Any


async def test_access_review_reports_the_seeded_matrix(fx_api: Any) -> None:
    secadmin = await fx_api.login(["secadmin"])
    rows = await fx_api.client.get("/api/v1/admin/access-review", headers=secadmin)
    assert rows.status_code == 200, rows.text

    def row(role: str, entity: str, item: str) -> dict[str, Any]:
        return next(r for r in rows.json() if r["subject"] == role and r["entity"] == entity and r["item"] == item)

    phone = row("support_agent", "contact", "phone")
    assert (phone["visibility"], phone["revealable"], phone["writable"]) == ("masked", True, False)
    assert row("marketing", "contact", "national_id")["visibility"] == "hidden"
    assert row("sales_rep", "customer", "name")["writable"] is True
    assert all(r["visibility"] in {None, "hidden"} for r in rows.json()
               if r["subject"] in {"sysadmin", "secadmin", "auditor"} and r["kind"] == "field")

    markdown = await fx_api.client.get("/api/v1/admin/access-review", params={"format": "markdown"},
                                       headers=secadmin)
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "support_agent" in markdown.text
    sales = await fx_api.login(["sales_manager"])
    assert (await fx_api.client.get("/api/v1/admin/access-review", headers=sales)).status_code == 403
