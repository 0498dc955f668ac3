"""The daily customer-analytics pipeline: CRM export + product database → warehouse → HTML report.

    prepare_sources ──┬── extract_crm ──────┬── clean ── enrich ── load ── report
                      └── extract_products ─┘

The data it reads and writes are declared as assets (the catalog, ``/assets``): the CRM export
and the shop database are inlets, the warehouse tables outlets of ``load`` (each event with its
row count and columns), the report an outlet of ``report``. A second DAG, ``top_customers``,
runs whenever both warehouse tables it needs (``orders & customers``) have new data.

``extract_crm`` and ``extract_products`` have no edge between them, so they run at the same time.
Small data travels as task results (the raw CRM rows, the cleaned customers); the 20k orders and the
enriched customers are written to ``<output_dir>/staging/<run_id>/`` and passed on as paths, which
keeps every stored result well under the engine's 1 MiB cap.

This file is also a DAG file: ``podium run examples/customer_analytics/pipeline.py --pool crm=2``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import sqlite3
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio

from engine import Asset, Context, dag, task
from sensors import Cron, OnAssets

try:
    from . import report_html, sample_data, warehouse
except (
    ImportError
):  # loaded by path (`podium run .../pipeline.py`), which puts this folder on sys.path
    import report_html  # type: ignore[no-redef]
    import sample_data  # type: ignore[no-redef]
    import warehouse  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
CITIES_CSV = HERE / "cities.csv"
OUTPUT_DIR = HERE / "output"
DATA_DIR = OUTPUT_DIR / "data"
TIMEZONE = ZoneInfo("Europe/Berlin")
# The engine must be given these pools: Engine(pools=POOLS), or `podium run --pool crm=2`.
POOLS = {"crm": 2}
KEEP_STAGING_RUNS = 5
CHECKPOINT_EVERY = 1000

# -- the data, as assets (stable logical URIs: the files' places depend on the run's params) ----------

DAY = 24 * 3600
CRM_EXPORT = Asset("crm://customer_analytics/customers.csv", name="CRM export")
SHOP_DB = Asset("sqlite://shop/products", name="products and orders (shop DB)")
WH_CUSTOMERS = Asset(
    "sqlite://warehouse/dim_customer", name="warehouse: customers", fresh_within=DAY + 3600
)
WH_ORDERS = Asset(
    "sqlite://warehouse/fact_orders", name="warehouse: orders", fresh_within=DAY + 3600
)
WH_PRODUCTS = Asset("sqlite://warehouse/dim_product", name="warehouse: products")
WH_LTV = Asset("sqlite://warehouse/customer_ltv", name="warehouse: lifetime value")
REPORT = Asset("file://customer_analytics/report.html", name="customer report")
TOP_CUSTOMERS = Asset("file://customer_analytics/top_customers.json", name="top customers")
WAREHOUSE_TABLES = {
    WH_CUSTOMERS.uri: "dim_customer",
    WH_ORDERS.uri: "fact_orders",
    WH_PRODUCTS.uri: "dim_product",
    WH_LTV.uri: "customer_ltv",
}

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[a-z]{2,}")
ORDER_COLUMNS = ("order_id", "customer_id", "product_id", "order_date", "quantity", "amount_cents")
SELECT_PRODUCTS = "SELECT product_id, name, category, price_cents FROM products ORDER BY product_id"
SELECT_ORDERS = """
SELECT order_id, customer_id, product_id, order_date, quantity, amount_cents
FROM orders
WHERE status = 'completed' AND order_date <= ?
ORDER BY order_id
"""


# -- helpers ------------------------------------------------------------------------------------------


def read_cities(path: Path = CITIES_CSV) -> dict[str, dict[str, Any]]:
    """The bundled lookup table, keyed by case-folded city name."""
    with path.open(newline="", encoding="utf-8") as f:
        return {
            row["city"].casefold(): {**row, "lat": float(row["lat"]), "lon": float(row["lon"])}
            for row in csv.DictReader(f)
        }


def resolve_day(day: str, ctx: Context) -> str:
    """``"today"`` is the run's logical date in Berlin; anything else must be an ISO date."""
    if day == "today":
        logical = ctx.logical_date or datetime.now(UTC)
        return logical.astimezone(TIMEZONE).date().isoformat()
    try:
        return date.fromisoformat(day).isoformat()
    except ValueError:
        raise ValueError(f"param day must be 'today' or YYYY-MM-DD, got {day!r}") from None


def parse_signup_date(text: str | None) -> str | None:
    text = (text or "").strip()
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(text, fmt).date().isoformat()
    return None


def staging_dir(output_dir: str, run_id: str) -> Path:
    return Path(output_dir) / "staging" / run_id


def prune_staging(output_dir: str, keep: int) -> None:
    """Remove the staging folders of older runs, keeping the newest ``keep``."""
    root = Path(output_dir) / "staging"
    if not root.is_dir():
        return
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in folders[:-keep] if keep else folders:
        shutil.rmtree(old, ignore_errors=True)


def write_text_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -- tasks --------------------------------------------------------------------------------------------


@task
def prepare_sources(ctx: Context, data_dir: str, output_dir: str) -> dict[str, Any]:
    """Stand-in for the upstream systems: generate the sample sources on first use."""
    cities = {c["city"]: c["region"] for c in read_cities().values()}
    generated = sample_data.ensure_sources(Path(data_dir), cities)
    if generated:
        ctx.log.info("generated sample sources in %s", data_dir)
    prune_staging(output_dir, keep=KEEP_STAGING_RUNS - 1)
    paths = sample_data.source_paths(Path(data_dir))
    return {
        "crm_csv": str(paths.crm_csv),
        "products_db": str(paths.products_db),
        "generated": generated,
    }


@task(retries=2, retry_delay=1, retry_on=OSError, timeout=600, pool="crm", inlets=[CRM_EXPORT])
async def extract_crm(ctx: Context, sources: dict[str, Any]) -> list[dict[str, str]]:
    """The CRM export's rows as they are (all strings), recording progress as a checkpoint.

    The checkpoint is what ``podium show`` displays while this runs; an extractor paging through a
    CRM API would store its page cursor there and resume from it on the next try.
    """
    if ctx.last_checkpoint:
        ctx.log.info("try %d; the previous try got to %s", ctx.try_number, ctx.last_checkpoint)
    text = await anyio.Path(sources["crm_csv"]).read_text(encoding="utf-8")
    rows: list[dict[str, str]] = []
    for row in csv.DictReader(io.StringIO(text, newline="")):
        rows.append(row)
        if len(rows) % CHECKPOINT_EVERY == 0:
            await ctx.checkpoint({"rows_read": len(rows), "done": False})
    await ctx.checkpoint({"rows_read": len(rows), "done": True})
    return rows


@task(retries=2, retry_delay=1, retry_on=(OSError, sqlite3.OperationalError), inlets=[SHOP_DB])
def extract_products(
    ctx: Context, sources: dict[str, Any], day: str, output_dir: str
) -> dict[str, Any]:
    """The product catalogue, and the completed orders up to ``day`` (to a staging CSV)."""
    as_of = resolve_day(day, ctx)
    staging = staging_dir(output_dir, ctx.run_id)
    staging.mkdir(parents=True, exist_ok=True)
    orders_csv = staging / "orders.csv"
    uri = f"{Path(sources['products_db']).resolve().as_uri()}?mode=ro"
    count = revenue = 0
    with (
        contextlib.closing(sqlite3.connect(uri, uri=True)) as db,
        orders_csv.open("w", newline="", encoding="utf-8") as f,
    ):
        products = [
            dict(zip(("product_id", "name", "category", "price_cents"), r, strict=True))
            for r in db.execute(SELECT_PRODUCTS)
        ]
        writer = csv.writer(f)
        writer.writerow(ORDER_COLUMNS)
        for order in db.execute(SELECT_ORDERS, (as_of,)):
            writer.writerow(order)
            count += 1
            revenue += order[-1]
    return {
        "as_of": as_of,
        "staging_dir": str(staging),
        "orders_csv": str(orders_csv),
        "orders": count,
        "revenue_cents": revenue,
        "products": products,
    }


@task
def clean(crm: list[dict[str, str]], products: dict[str, Any]) -> dict[str, Any]:
    """Normalise whitespace and emails, drop invalid rows and duplicates, drop orphaned orders."""
    cities = read_cities()
    stats: Counter[str] = Counter()
    customers: dict[int, dict[str, Any]] = {}
    emails: set[str] = set()
    for raw in crm:
        name = " ".join((raw.get("name") or "").split())
        email = (raw.get("email") or "").strip().lower()
        try:
            customer_id = int((raw.get("customer_id") or "").strip())
        except ValueError:
            stats["invalid_id"] += 1
            continue
        if not name or not EMAIL.fullmatch(email):
            stats["invalid_email_or_name"] += 1
            continue
        if customer_id in customers:
            stats["duplicate_rows"] += 1
            continue
        if email in emails:
            stats["duplicate_emails"] += 1
            continue
        city_text = " ".join((raw.get("city") or "").split())
        known = cities.get(city_text.casefold())
        if not city_text:
            stats["missing_city"] += 1
        elif known is None:
            stats["unknown_city"] += 1
        emails.add(email)
        customers[customer_id] = {
            "customer_id": customer_id,
            "name": name,
            "email": email,
            "city": known["city"] if known else (city_text or None),
            "signup_date": parse_signup_date(raw.get("signup_date")),
        }

    staging = Path(products["staging_dir"])
    orders_csv = staging / "orders_clean.csv"
    kept = 0
    with (
        open(products["orders_csv"], newline="", encoding="utf-8") as src,
        orders_csv.open("w", newline="", encoding="utf-8") as dst,
    ):
        writer = csv.writer(dst)
        writer.writerow(ORDER_COLUMNS)
        for order in csv.DictReader(src):
            if int(order["customer_id"]) not in customers:
                stats["orphaned_orders"] += 1
                continue
            writer.writerow(order[c] for c in ORDER_COLUMNS)
            kept += 1
    return {
        "customers": list(customers.values()),
        "orders_csv": str(orders_csv),
        "orders": kept,
        "products": products["products"],
        "staging_dir": products["staging_dir"],
        "as_of": products["as_of"],
        "stats": {"crm_rows": len(crm), **dict(sorted(stats.items()))},
    }


@task
def enrich(cleaned: dict[str, Any]) -> dict[str, Any]:
    """Add location from the lookup table and lifetime value, order count, first and last order."""
    cities = read_cities()
    totals: dict[int, list[Any]] = {}  # customer_id -> [orders, cents, first, last]
    with open(cleaned["orders_csv"], newline="", encoding="utf-8") as f:
        for order in csv.DictReader(f):
            day = order["order_date"]
            t = totals.setdefault(int(order["customer_id"]), [0, 0, day, day])
            t[0] += 1
            t[1] += int(order["amount_cents"])
            t[2], t[3] = min(t[2], day), max(t[3], day)
    customers = []
    for c in cleaned["customers"]:
        place = cities.get((c["city"] or "").casefold())
        count, cents, first, last = totals.get(c["customer_id"], (0, 0, None, None))
        customers.append(
            {
                **c,
                "region": place["region"] if place else "Unknown",
                "country": place["country"] if place else None,
                "lat": place["lat"] if place else None,
                "lon": place["lon"] if place else None,
                "order_count": count,
                "lifetime_value_cents": cents,
                "first_order": first,
                "last_order": last,
            }
        )
    customers_json = Path(cleaned["staging_dir"]) / "customers.json"
    write_text_atomically(customers_json, json.dumps(customers, ensure_ascii=False))
    return {
        "customers_json": str(customers_json),
        "customers": len(customers),
        "orders_csv": cleaned["orders_csv"],
        "orders": cleaned["orders"],
        "products": cleaned["products"],
        "as_of": cleaned["as_of"],
        "stats": cleaned["stats"],
    }


@task(
    retries=1,
    retry_delay=1,
    retry_on=(OSError, sqlite3.OperationalError),
    outlets=[WH_CUSTOMERS, WH_ORDERS, WH_PRODUCTS, WH_LTV],
)
def load(ctx: Context, enriched: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """Replace ``<output_dir>/warehouse.db`` with this run's tables."""
    customers = json.loads(Path(enriched["customers_json"]).read_text(encoding="utf-8"))
    path = Path(output_dir) / "warehouse.db"
    with open(enriched["orders_csv"], newline="", encoding="utf-8") as f:
        orders = (
            (int(o["order_id"]), int(o["customer_id"]), int(o["product_id"]), o["order_date"],
             int(o["quantity"]), int(o["amount_cents"]))
            for o in csv.DictReader(f)
        )  # fmt: skip
        loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
        warehouse.build(
            path,
            customers=customers,
            products=enriched["products"],
            orders=orders,
            load_info=(ctx.run_id, enriched["as_of"], loaded_at),
        )
    summary = warehouse.read_summary(path)
    for uri, table in WAREHOUSE_TABLES.items():  # one asset event per table: rows and columns
        rows, columns = warehouse.describe_table(path, table)
        metadata = {"rows": rows, "path": str(path), "table": table, "as_of": enriched["as_of"]}
        ctx.asset_event_sync(uri, metadata=metadata, schema=columns)
    top = summary["regions"][0] if summary["regions"] else {"region": None, "revenue_cents": 0}
    return {
        "warehouse": str(path),
        "as_of": enriched["as_of"],
        "customers": summary["customers"],
        "buyers": summary["buyers"],
        "orders": summary["orders"],
        "revenue_cents": summary["revenue_cents"],
        "top_region": top["region"],
        "top_region_revenue_cents": top["revenue_cents"],
        "cleaning": enriched["stats"],
    }


@task(inlets=[WH_CUSTOMERS, WH_ORDERS, WH_LTV], outlets=[REPORT])
def report(ctx: Context, loaded: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """Write ``<output_dir>/report.html`` from the warehouse tables."""
    figures = warehouse.read_figures(Path(loaded["warehouse"]))
    path = Path(output_dir) / "report.html"
    write_text_atomically(path, report_html.render(figures))
    ctx.asset_event_sync(REPORT.uri, metadata={"path": str(path), "bytes": path.stat().st_size})
    return {"report": str(path), "top_region": loaded["top_region"]}


@dag(
    triggers=[Cron("0 4 * * *", tz="Europe/Berlin")],
    max_active_runs=1,
    description="Daily customer analytics: CRM + orders -> warehouse.db and report.html",
    tags=["example", "analytics"],
)
def customer_analytics(
    day: str = "today", data_dir: str = str(DATA_DIR), output_dir: str = str(OUTPUT_DIR)
) -> None:
    """``day``: include orders up to this date (``"today"``: the run's logical date in Berlin)."""
    sources = prepare_sources(data_dir, output_dir)
    crm = extract_crm(sources)
    products = extract_products(sources, day, output_dir)
    loaded = load(enrich(clean(crm, products)), output_dir)
    report(loaded, output_dir)


# -- a second DAG, triggered by data: the top customers, whenever orders and customers are new -----


@task(inlets=[WH_ORDERS, WH_CUSTOMERS], outlets=[TOP_CUSTOMERS])
def rank_customers(ctx: Context, top: int = 10) -> dict[str, Any]:
    """The customers with the highest lifetime value, from the warehouse the events point to."""
    event = ctx.event or {}
    paths = [e["metadata"]["path"] for e in event.get("events", []) if e.get("metadata")]
    if not paths:
        raise ValueError("run me through OnAssets: the asset events name the warehouse")
    path = Path(paths[-1])
    ranked = warehouse.top_customers(path, top)
    out = path.with_name("top_customers.json")
    write_text_atomically(out, json.dumps(ranked, ensure_ascii=False, indent=1))
    ctx.asset_event_sync(TOP_CUSTOMERS.uri, metadata={"rows": len(ranked), "path": str(out)})
    return {"top_customers": str(out), "customers": len(ranked), "consumed": len(paths)}


@dag(
    triggers=[OnAssets(WH_ORDERS & WH_CUSTOMERS)],
    description="The top customers by lifetime value, whenever orders and customers are fresh",
    tags=["example", "analytics"],
)
def top_customers() -> None:
    rank_customers()
