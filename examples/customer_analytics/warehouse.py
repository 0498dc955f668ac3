"""The warehouse: a SQLite file with the tables a BI tool reads, and the queries the report runs.

Each load builds a complete new file beside the old one and renames it into place, so readers see
either the previous load or this one, never a mix, and a re-run of the same day replaces it whole.
Money is integer cents throughout, so sums are exact.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE dim_customer (
    customer_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    city TEXT,
    region TEXT NOT NULL,
    country TEXT,
    lat REAL,
    lon REAL,
    signup_date TEXT
);
CREATE TABLE dim_product (
    product_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price_cents INTEGER NOT NULL
);
CREATE TABLE fact_orders (
    order_id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES dim_customer (customer_id),
    product_id INTEGER NOT NULL REFERENCES dim_product (product_id),
    order_date TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL
);
CREATE INDEX fact_orders_by_customer ON fact_orders (customer_id);
CREATE TABLE customer_ltv (
    customer_id INTEGER PRIMARY KEY REFERENCES dim_customer (customer_id),
    order_count INTEGER NOT NULL,
    lifetime_value_cents INTEGER NOT NULL,
    first_order TEXT,
    last_order TEXT
);
CREATE TABLE region_summary (
    region TEXT PRIMARY KEY,
    customers INTEGER NOT NULL,
    buyers INTEGER NOT NULL,
    orders INTEGER NOT NULL,
    revenue_cents INTEGER NOT NULL,
    avg_ltv_cents INTEGER NOT NULL
);
CREATE TABLE load_info (
    run_id TEXT NOT NULL,
    day TEXT NOT NULL,
    loaded_at TEXT NOT NULL
);
"""

INSERT_CUSTOMER = """
INSERT INTO dim_customer (customer_id, name, email, city, region, country, lat, lon, signup_date)
VALUES (:customer_id, :name, :email, :city, :region, :country, :lat, :lon, :signup_date)
"""
INSERT_PRODUCT = """
INSERT INTO dim_product (product_id, name, category, price_cents)
VALUES (:product_id, :name, :category, :price_cents)
"""
INSERT_ORDER = """
INSERT INTO fact_orders (order_id, customer_id, product_id, order_date, quantity, amount_cents)
VALUES (?, ?, ?, ?, ?, ?)
"""
INSERT_LTV = """
INSERT INTO customer_ltv (customer_id, order_count, lifetime_value_cents, first_order, last_order)
VALUES (:customer_id, :order_count, :lifetime_value_cents, :first_order, :last_order)
"""
FILL_REGION_SUMMARY = """
INSERT INTO region_summary (region, customers, buyers, orders, revenue_cents, avg_ltv_cents)
SELECT c.region,
       COUNT(*),
       SUM(l.order_count > 0),
       SUM(l.order_count),
       SUM(l.lifetime_value_cents),
       CAST(ROUND(AVG(l.lifetime_value_cents)) AS INTEGER)
FROM dim_customer AS c JOIN customer_ltv AS l USING (customer_id)
GROUP BY c.region
"""
SELECT_REGIONS = """
SELECT region, customers, buyers, orders, revenue_cents, avg_ltv_cents
FROM region_summary ORDER BY revenue_cents DESC, region
"""
SELECT_TOTALS = """
SELECT (SELECT COUNT(*) FROM dim_customer),
       (SELECT COUNT(*) FROM customer_ltv WHERE order_count > 0),
       (SELECT COUNT(*) FROM fact_orders),
       (SELECT COALESCE(SUM(amount_cents), 0) FROM fact_orders)
"""
SELECT_LTVS = "SELECT lifetime_value_cents FROM customer_ltv"
SELECT_TOP_CUSTOMERS = """
SELECT c.customer_id, c.name, c.city, c.region, l.order_count, l.lifetime_value_cents,
       l.first_order, l.last_order
FROM customer_ltv AS l JOIN dim_customer AS c USING (customer_id)
ORDER BY l.lifetime_value_cents DESC, c.customer_id
LIMIT ?
"""
SELECT_LOAD_INFO = "SELECT run_id, day, loaded_at FROM load_info"


def build(
    path: Path,
    *,
    customers: Sequence[Mapping[str, Any]],
    products: Sequence[Mapping[str, Any]],
    orders: Iterable[Sequence[Any]],
    load_info: tuple[str, str, str],
) -> None:
    """Write a complete warehouse to ``path``, replacing any previous file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        with contextlib.closing(sqlite3.connect(tmp)) as db:
            db.executescript(SCHEMA)
            db.executemany(INSERT_CUSTOMER, customers)
            db.executemany(INSERT_PRODUCT, products)
            db.executemany(INSERT_ORDER, orders)
            db.executemany(INSERT_LTV, customers)
            db.execute(FILL_REGION_SUMMARY)
            db.execute("INSERT INTO load_info VALUES (?, ?, ?)", load_info)
            db.commit()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _connect_read_only(path: Path) -> contextlib.closing[sqlite3.Connection]:
    return contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True))


def read_summary(path: Path) -> dict[str, Any]:
    """Totals and the per-region rows, biggest revenue first."""
    with _connect_read_only(path) as db:
        customers, buyers, orders, revenue = db.execute(SELECT_TOTALS).fetchone()
        columns = ("region", "customers", "buyers", "orders", "revenue_cents", "avg_ltv_cents")
        regions = [dict(zip(columns, r, strict=True)) for r in db.execute(SELECT_REGIONS)]
    return {
        "customers": customers,
        "buyers": buyers,
        "orders": orders,
        "revenue_cents": revenue,
        "regions": regions,
    }


def read_figures(path: Path, *, top: int = 10) -> dict[str, Any]:
    """What the report shows: the summary, every customer's LTV, the top customers, the load."""
    figures = read_summary(path)
    with _connect_read_only(path) as db:
        ltvs = [r[0] for r in db.execute(SELECT_LTVS)]
        columns = ("customer_id", "name", "city", "region", "order_count",
                   "lifetime_value_cents", "first_order", "last_order")  # fmt: skip
        top_customers = [
            dict(zip(columns, r, strict=True)) for r in db.execute(SELECT_TOP_CUSTOMERS, (top,))
        ]
        run_id, day, loaded_at = db.execute(SELECT_LOAD_INFO).fetchone()
    return {
        **figures,
        "ltvs_cents": ltvs,
        "top_customers": top_customers,
        "run_id": run_id,
        "day": day,
        "loaded_at": loaded_at,
    }


_TABLES = frozenset(
    {"dim_customer", "dim_product", "fact_orders", "customer_ltv", "region_summary", "load_info"}
)


def describe_table(path: Path, table: str) -> tuple[int, list[dict[str, str]]]:
    """A table's row count and columns (``[{"name", "type"}]``), for its asset event."""
    if table not in _TABLES:
        raise ValueError(f"unknown warehouse table {table!r}")
    with contextlib.closing(sqlite3.connect(path)) as db:
        (rows,) = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        columns = [
            {"name": name, "type": kind.lower()}
            for _, name, kind, *_ in db.execute(f"PRAGMA table_info({table})")
        ]
    return int(rows), columns


def top_customers(path: Path, top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` customers by lifetime value."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        found = db.execute(
            "SELECT c.customer_id, c.name, c.region, l.lifetime_value_cents, l.order_count "
            "FROM customer_ltv l JOIN dim_customer c USING (customer_id) "
            "ORDER BY l.lifetime_value_cents DESC, c.customer_id LIMIT ?",
            (top,),
        ).fetchall()
    keys = ("customer_id", "name", "region", "lifetime_value_cents", "order_count")
    return [dict(zip(keys, row, strict=True)) for row in found]
