"""Deterministic sample sources for the demo: a messy CRM export (CSV) and a product database (SQLite).

They stand in for the systems a real pipeline would read. Everything comes from one seeded
``random.Random``, so the same seed always writes byte-identical files. Files are written under a
temporary name and renamed into place, so a reader never sees half of one.

The CRM export is deliberately messy, the way exports are: stray and doubled whitespace, mixed-case
emails, re-exported duplicate rows, a few invalid emails, missing cities, cities in odd casing and a
few signup dates in German ``DD.MM.YYYY`` notation.
"""

from __future__ import annotations

import contextlib
import csv
import os
import random
import sqlite3
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import accumulate
from pathlib import Path

SEED = 20261125
CUSTOMERS = 3000
ORDERS = 20_000
FIRST_CUSTOMER_ID = 100_001
# Orders span the two years up to this day; signups reach back four years.
LAST_ORDER_DAY = date(2026, 11, 24)

CRM_FILE = "crm_customers.csv"
PRODUCTS_FILE = "products.db"
CRM_COLUMNS = ("customer_id", "name", "email", "city", "signup_date")

_FIRST_NAMES = (
    "Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hannah", "Ivan", "Jonas", "Karin",
    "Lea", "Lukas", "Marta", "Noah", "Olga", "Paul", "Quentin", "Rosa", "Sofia", "Tobias", "Ute",
    "Victor", "Wiebke", "Xavier", "Yusuf", "Zoe", "Amélie", "Björn", "Chiara", "Diego", "Eva",
)  # fmt: skip
_LAST_NAMES = (
    "Schmidt", "Müller", "Weber", "Fischer", "Meyer", "Wagner", "Becker", "Hoffmann", "Jansen",
    "de Vries", "Dubois", "Martin", "Rossi", "Bianchi", "García", "López", "Silva", "Nielsen",
    "Andersson", "Virtanen", "Kowalski", "Novák", "Nagy", "Murphy", "Smith", "O'Brien", "Peeters",
)  # fmt: skip
_DOMAINS = ("example.com", "mail.example.org", "post.example.net", "inbox.example.de")
_CATEGORIES = {
    "Coffee": (890, 2490),
    "Tea": (590, 1890),
    "Equipment": (2990, 34900),
    "Accessories": (490, 3990),
    "Subscription": (1990, 5990),
}
_ADJECTIVES = ("Classic", "Dark", "Bright", "Nordic", "Alpine", "Harbour", "Velvet", "Urban")
# Heavier weight for the home market.
_REGION_WEIGHT = {"DACH": 3.0, "Benelux": 2.0, "Nordics": 1.5, "UK & Ireland": 1.5}


@dataclass(frozen=True, kw_only=True)
class SourcePaths:
    crm_csv: Path
    products_db: Path


def source_paths(data_dir: Path) -> SourcePaths:
    return SourcePaths(crm_csv=data_dir / CRM_FILE, products_db=data_dir / PRODUCTS_FILE)


def ensure_sources(data_dir: Path, cities: dict[str, str], *, seed: int = SEED) -> bool:
    """Generate the sources into ``data_dir`` unless both files exist; True if it generated them.

    ``cities`` maps each known city to its region (only the weights depend on the region).
    """
    paths = source_paths(data_dir)
    if paths.crm_csv.exists() and paths.products_db.exists():
        return False
    data_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    customers = _customers(rng, cities)
    _write_crm(paths.crm_csv, _crm_rows(rng, customers))
    _write_products_db(paths.products_db, rng, customers)
    return True


def _customers(rng: random.Random, cities: dict[str, str]) -> list[dict[str, object]]:
    names = sorted(cities)
    city_weights = list(accumulate(_REGION_WEIGHT.get(cities[c], 1.0) for c in names))
    customers = []
    for i in range(CUSTOMERS):
        customer_id = FIRST_CUSTOMER_ID + i
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        local = f"{first}.{last}".replace(" ", "").replace("'", "")
        signup = LAST_ORDER_DAY - timedelta(days=rng.randint(10, 4 * 365))
        customers.append(
            {
                "customer_id": customer_id,
                "name": f"{first} {last}",
                "email": f"{local}.{customer_id}@{rng.choice(_DOMAINS)}",
                "city": rng.choices(names, cum_weights=city_weights)[0],
                "signup_date": signup,
            }
        )
    return customers


def _crm_rows(rng: random.Random, customers: list[dict[str, object]]) -> list[list[str]]:
    """The export as text, messed up; re-exported duplicates are appended at random positions."""
    rows: list[list[str]] = []
    for c in customers:
        name, email, city = str(c["name"]), str(c["email"]), str(c["city"])
        signup = c["signup_date"]
        assert isinstance(signup, date)
        if rng.random() < 0.10:
            name = f"  {name.replace(' ', '   ')} "
        if rng.random() < 0.25:
            email = rng.choice((email.upper(), email.title(), f" {email} "))
        if rng.random() < 0.012:  # invalid: these customers are dropped by `clean`
            email = rng.choice((email.replace("@", " at "), "", email.split("@")[0] + "@", "n/a"))
        roll = rng.random()
        if roll < 0.025:
            city = ""
        elif roll < 0.08:
            city = rng.choice((city.upper(), city.lower(), f" {city}  "))
        signup_text = signup.isoformat()
        if rng.random() < 0.03:
            signup_text = signup.strftime("%d.%m.%Y")
        rows.append([str(c["customer_id"]), name, email, city, signup_text])
    for original in rng.sample(rows, k=len(rows) // 50):
        duplicate = list(original)
        duplicate[1] = f" {duplicate[1].strip()}"
        duplicate[2] = duplicate[2].strip().lower()
        rows.insert(rng.randrange(len(rows) + 1), duplicate)
    return rows


def _write_crm(path: Path, rows: list[list[str]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CRM_COLUMNS)
        writer.writerows(rows)
    os.replace(tmp, path)


def _write_products_db(path: Path, rng: random.Random, customers: list[dict[str, object]]) -> None:
    products = []
    for i, category in enumerate(sorted(_CATEGORIES) * 8):
        low, high = _CATEGORIES[category]
        name = f"{rng.choice(_ADJECTIVES)} {category} No. {i + 1}"
        products.append((i + 1, name, category, rng.randrange(low, high, 10)))
    # A few customers buy a lot, most buy a little (Pareto weights), like real shops.
    buyer_weights = list(accumulate(rng.paretovariate(1.6) for _ in customers))
    first_order_day = LAST_ORDER_DAY - timedelta(days=2 * 365)
    orders = []
    for order_id in range(1, ORDERS + 1):
        customer = rng.choices(customers, cum_weights=buyer_weights)[0]
        signup = customer["signup_date"]
        assert isinstance(signup, date)
        start = max(signup, first_order_day)
        day = start + timedelta(days=rng.randint(0, (LAST_ORDER_DAY - start).days))
        product = rng.choice(products)
        quantity = rng.choices((1, 2, 3, 4), (70, 20, 7, 3))[0]
        status = rng.choices(("completed", "refunded", "cancelled"), (94, 3, 3))[0]
        orders.append(
            (order_id, customer["customer_id"], product[0], day.isoformat(), quantity,
             quantity * product[3], status)
        )  # fmt: skip
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(tmp)) as db:
        db.executescript(
            """
            CREATE TABLE products (
                product_id INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                category TEXT NOT NULL,
                price_cents INTEGER NOT NULL
            );
            CREATE TABLE orders (
                order_id INTEGER PRIMARY KEY,
                customer_id INTEGER NOT NULL,
                product_id INTEGER NOT NULL REFERENCES products (product_id),
                order_date TEXT NOT NULL,
                quantity INTEGER NOT NULL,
                amount_cents INTEGER NOT NULL,
                status TEXT NOT NULL
            );
            CREATE INDEX orders_by_date ON orders (order_date);
            """
        )
        db.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", products)
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)", orders)
        db.commit()
    os.replace(tmp, path)
