"""Demo data and reports for the embedded mode: a small sales table and five reports to try the API on."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from application.ports import UnitOfWorkFactory
from domain.reports import Chart, ChartType, ParameterType, ReportConfiguration, ReportParameter

SALES_SUMMARY_ID = UUID("00000000-0000-4000-8000-000000000001")
ORDER_LINES_ID = UUID("00000000-0000-4000-8000-000000000002")
EMAIL_DIGEST_ID = UUID("00000000-0000-4000-8000-000000000003")
REVENUE_BY_REGION_ID = UUID("00000000-0000-4000-8000-000000000004")
DAILY_REVENUE_ID = UUID("00000000-0000-4000-8000-000000000005")
DEMO_ROWS = 20_000

_metadata = sa.MetaData()
demo_sales = sa.Table(
    "demo_sales",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("region", sa.String(8), nullable=False),
    sa.Column("product", sa.String(32), nullable=False),
    sa.Column("sold_on", sa.Date, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("amount", sa.Numeric(12, 2), nullable=False),
)

DEMO_REPORTS = (
    ReportConfiguration(
        id=SALES_SUMMARY_ID,
        name="Sales by region",
        description="Orders, units and revenue per region and product since a date. Fast.",
        query=(
            "SELECT region, product, count(*) AS orders, sum(quantity) AS units, round(sum(amount), 2) AS revenue\n"
            "FROM demo_sales WHERE (:region IS NULL OR region = :region) AND sold_on >= :since\n"
            "GROUP BY region, product ORDER BY region, product"
        ),
        parameters=(
            ReportParameter("region", ParameterType.STRING),
            ReportParameter("since", ParameterType.DATE, default="2026-01-01"),
        ),
        formats=("csv", "json", "xlsx", "pdf", "ndjson"),
    ),
    ReportConfiguration(
        id=ORDER_LINES_ID,
        name="Order lines export",
        description="Every order line, repeated `copies` times: a large export that takes a few seconds "
        "and reports progress while it runs.",
        query=(
            "WITH RECURSIVE copy(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM copy WHERE n < :copies)\n"
            "SELECT copy.n AS copy, s.id, s.region, s.product, s.sold_on, s.quantity, s.amount\n"
            "FROM copy CROSS JOIN demo_sales AS s ORDER BY copy.n, s.id"
        ),
        parameters=(ReportParameter("copies", ParameterType.INTEGER, default=25),),
        formats=("csv", "json", "xlsx", "ndjson", "parquet"),
    ),
    ReportConfiguration(
        id=REVENUE_BY_REGION_ID,
        name="Revenue by region",
        description="Revenue and units per region since a date, as a PDF with a bar chart (or a spreadsheet).",
        query=(
            "SELECT region, round(sum(amount), 2) AS revenue, sum(quantity) AS units, count(*) AS orders\n"
            "FROM demo_sales WHERE sold_on >= :since GROUP BY region ORDER BY revenue DESC"
        ),
        parameters=(ReportParameter("since", ParameterType.DATE, default="2025-01-01"),),
        formats=("pdf", "xlsx", "csv", "json"),
        chart=Chart(ChartType.BAR, "region", ("revenue",)),
    ),
    ReportConfiguration(
        id=DAILY_REVENUE_ID,
        name="Daily revenue",
        description="Revenue and orders per day between two dates, as a PDF with a line chart.",
        query=(
            "SELECT sold_on AS day, round(sum(amount), 2) AS revenue, count(*) AS orders\n"
            "FROM demo_sales WHERE sold_on >= :since AND sold_on < :until GROUP BY sold_on ORDER BY sold_on"
        ),
        parameters=(
            ReportParameter("since", ParameterType.DATE, default="2025-01-01"),
            ReportParameter("until", ParameterType.DATE, default="2025-04-01"),
        ),
        formats=("pdf", "xlsx", "csv", "json"),
        chart=Chart(ChartType.LINE, "day", ("revenue",)),
    ),
    ReportConfiguration(
        id=EMAIL_DIGEST_ID,
        name="Weekly email digest",
        description="Delivered by email, not through this API: generating it answers 409.",
        query="SELECT region, sum(amount) AS revenue FROM demo_sales GROUP BY region",
        formats=("csv",),
        delivery_target="EMAIL",
    ),
)


def _rows(count: int) -> list[dict[str, object]]:
    rng = random.Random(20261128)  # noqa: S311 - reproducible demo data
    start = date(2025, 1, 1)
    regions, products = ("EU", "US", "APAC", "LATAM"), ("widget", "gadget", "gizmo", "doohickey", "sprocket")
    return [
        {
            "id": i,
            "region": rng.choice(regions),
            "product": rng.choice(products),
            "sold_on": start + timedelta(days=rng.randrange(700)),
            "quantity": rng.randint(1, 20),
            "amount": round(rng.uniform(5, 500), 2),
        }
        for i in range(1, count + 1)
    ]


async def seed_demo(engine: AsyncEngine, uow: UnitOfWorkFactory) -> None:
    """Create and fill the demo table and the demo reports, once: a later start leaves them (and deletions) alone."""
    async with engine.begin() as conn:
        await conn.run_sync(_metadata.create_all)
        if await conn.scalar(sa.select(sa.func.count()).select_from(demo_sales)):
            return
        await conn.execute(demo_sales.insert(), _rows(DEMO_ROWS))
    now = datetime.now(UTC)
    async with uow() as unit:
        for report in DEMO_REPORTS:
            if await unit.reports.get(report.id) is None:
                await unit.reports.add(report.with_changes(created_at=now, updated_at=now))
        await unit.commit()
