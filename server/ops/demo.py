"""``strongroom demo``: a populated CRM for newcomers, through the same services the API uses."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.config import Settings
from server.security.access import AccessControl
from server.security.field_cipher import FieldCipher
from server.security.identity import PasswordHasher, User
from server.security.principal import Principal, PrincipalKind, system_principal
from server.services.activities import ActivityService
from server.services.contacts import ContactService
from server.services.customers import CustomerService
from server.services.identity import IdentityService, generate_password
from server.services.opportunities import OpportunityService
from server.services.records import CallContext
from server.services.service_records import ServiceRecordService

SURNAMES_ZH = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭"]
GIVEN_ZH = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明"]
FIRST_LATIN = ["Anna", "Lukas", "Sofia", "James", "Maria", "Pierre", "Elena", "Tomás", "Ingrid", "Omar", "Chloé",
               "Henrik", "Priya", "Mateo", "Fiona", "Jonas"]
LAST_LATIN = ["Schmidt", "Rossi", "García", "O'Connor", "Dubois", "Nowak", "Jensen", "Silva", "Novak", "Müller",
              "Andersson", "Kowalski", "Fischer", "Moreau", "Costa", "Byrne"]
CITY_ZH = ["上海", "北京", "深圳", "杭州", "苏州", "成都", "武汉", "南京"]
TRADE_ZH = ["精密机械", "智能科技", "医疗器械", "新材料", "物流", "电子", "生物制药", "环保工程"]
COMPANY_LATIN = ["Nordlicht Logistics", "Alpen Medical", "Baltic Components", "Iberia Foods", "Rhein Automation",
                 "Atlas Insurance", "Helix Diagnostics", "Solent Marine", "Danube Steel", "Meridian Retail"]
SUFFIX_LATIN = ["GmbH", "S.A.", "Ltd", "AG", "B.V.", "S.p.A.", "Inc."]
INDUSTRIES = ["manufacturing", "healthcare", "finance", "logistics", "retail", "energy", "public sector"]
REGIONS = ["East China", "North China", "South China", "DACH", "Nordics", "Iberia", "UK & Ireland"]
DEMO_USERS = [("li.wei", "李伟"), ("anna.schmidt", "Anna Schmidt"), ("zhang.min", "张敏"),
              ("james.byrne", "James Byrne")]


def _person(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(SURNAMES_ZH) + rng.choice(GIVEN_ZH) + (rng.choice(GIVEN_ZH) if rng.random() < 0.5 else "")
    return f"{rng.choice(FIRST_LATIN)} {rng.choice(LAST_LATIN)}"


def _company(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"{rng.choice(CITY_ZH)}{rng.choice(TRADE_ZH)}有限公司"
    return f"{rng.choice(COMPANY_LATIN)} {rng.choice(SUFFIX_LATIN)}"


def _phone(rng: random.Random, chinese: bool) -> str:
    if chinese:
        return f"+86 1{rng.choice('3578')}{rng.randrange(10**9):09d}"
    return f"+49 30 {rng.randrange(10**7):07d}"


async def _demo_owners(session: AsyncSession, settings: Settings) -> list[Principal]:
    identity = IdentityService(session, PasswordHasher())
    password = generate_password()
    created = []
    for username, display_name in DEMO_USERS:
        async with session.begin():
            exists = (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()
        if exists is None:
            await identity.create_user(username, roles=["sales_rep"], password=password, display_name=display_name)
            created.append(username)
    if created:
        print(f"demo users {', '.join(created)} (role sales_rep), password for all of them: {password}")
    async with session.begin():
        users = (await session.execute(select(User).where(User.username.in_([u for u, _ in DEMO_USERS])))).scalars()
        return [Principal(id=user.id, kind=PrincipalKind.USER, name=user.username, roles=tuple(user.roles))
                for user in users]


async def load_demo_data(session: AsyncSession, settings: Settings, *, customers: int, seed: int) -> int:
    """Create ``customers`` customers with contacts, opportunities, service records and activities."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not security
    owners = await _demo_owners(session, settings)
    access = AccessControl(async_sessionmaker(session.bind, expire_on_commit=False))
    await access.refresh_if_stale(force=True)
    cipher = FieldCipher.from_settings(settings)
    operator = CallContext(session=session, principal=system_principal("demo"), settings=settings, access=access,
                           cipher=cipher)
    now = datetime.now(UTC)
    counts = dict.fromkeys(("customers", "contacts", "opportunities", "service records", "activities"), 0)
    for index in range(customers):
        context = CallContext(session=session, principal=rng.choice(owners), settings=settings, access=access,
                              cipher=cipher)
        individual = rng.random() < 0.25
        chinese = rng.random() < 0.5
        customer = await CustomerService(context).create({
            "name": _person(rng) if individual else _company(rng),
            "kind": "individual" if individual else "company",
            "industry": None if individual else rng.choice(INDUSTRIES),
            "region": rng.choice(REGIONS),
            "tier": rng.choice("ABC"),
            "lifecycle_stage": rng.choice(["lead", "prospect", "customer", "customer"]),
            "source_channel": rng.choice(["web", "referral", "event", "partner", "outbound", "advertising"]),
            "tags": rng.sample(["key-account", "public", "export", "strategic", "smb", "renewal"], k=2),
            "tax_id": None if individual else f"91{rng.randrange(10**16):016d}",
        })
        counts["customers"] += 1
        contact_ids: list[Any] = []
        for _ in range(1 if individual else rng.randint(1, 3)):
            name = _person(rng)
            consent = rng.random() < 0.6
            contact = await ContactService(context).create({
                "customer_id": customer["id"], "name": name, "title": None if individual else rng.choice(
                    ["CEO", "Purchasing manager", "CTO", "Plant manager", "Finance director"]),
                "phone": _phone(rng, chinese), "mobile": _phone(rng, chinese),
                "email": f"contact{index}.{len(contact_ids)}@example.com",
                "national_id": f"1101{rng.randrange(10**14):014d}" if individual else None,
                "marketing_consent": consent, "consent_source": "web form" if consent else None,
            })
            contact_ids.append(contact["id"])
            counts["contacts"] += 1
        for _ in range(rng.randint(0, 3)):
            stage = rng.choice(["qualification", "needs_analysis", "proposal", "negotiation", "won", "lost"])
            opportunity = await OpportunityService(context).create({
                "customer_id": customer["id"], "title": rng.choice(["Annual supply contract", "Service renewal",
                                                                   "Pilot project", "Line upgrade", "Expansion"]),
                "amount": Decimal(rng.randrange(5_000, 2_000_000)), "currency": rng.choice(
                    ["CNY", "EUR", "USD"]), "stage": stage,
                "expected_close_date": date.today() + timedelta(days=rng.randint(-30, 180)),
                "loss_reason": "lost on price" if stage == "lost" else None,
            })
            counts["opportunities"] += 1
            await _activity(context, rng, customer["id"], now, opportunity_id=opportunity["id"])
            counts["activities"] += 1
        if rng.random() < 0.6:
            # Service records belong to the support team, not to sales: the operator files them for the owner.
            await ServiceRecordService(operator).create({
                "customer_id": customer["id"], "contact_id": rng.choice(contact_ids),
                "type": rng.choice(["inquiry", "complaint", "repair", "maintenance"]),
                "priority": rng.choice(["low", "normal", "normal", "high", "urgent"]),
                "description": "Customer reports intermittent fault on delivered unit; site visit requested.",
                "owner_id": context.principal.id,
            })
            counts["service records"] += 1
        for _ in range(rng.randint(1, 3)):
            await _activity(context, rng, customer["id"], now, contact_id=rng.choice(contact_ids))
            counts["activities"] += 1
    print("demo data loaded: " + ", ".join(f"{count} {noun}" for noun, count in counts.items()))
    return 0


async def _activity(context: CallContext, rng: random.Random, customer_id: Any, now: datetime, **links: Any) -> None:
    kind = rng.choice(["visit", "call", "email", "meeting", "note"])
    await ActivityService(context).create({
        "customer_id": customer_id, "kind": kind, "occurred_at": now - timedelta(hours=rng.randint(1, 24 * 120)),
        "summary": {"visit": "On-site visit with the plant team.", "call": "Follow-up call on open questions.",
                    "email": "Sent updated quotation.", "meeting": "Quarterly business review.",
                    "note": "Prefers contact in the morning."}[kind], **links,
    })
