"""Fan-out over the files of a day: one ``load_file`` instance per CSV file found at run time.

    list_files ── load_file[0..n] ── summarize

``list_files`` lists ``<data_dir>/<day>/*.csv`` (writing a day of sample exports first if the folder
does not exist); ``load_file.map(...)`` becomes one instance per path, each with its own state,
tries and result, at most 4 at a time (``concurrency=4``); ``summarize`` receives their results as
one list, in the order of the files.

This file is also a DAG file: ``python -m engine run examples/fan_out/pipeline.py``.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

from engine import Context, dag, task

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "output" / "data"
REGIONS = ("north", "south", "east", "west", "central", "islands")


def write_sample_day(folder: Path, day: str) -> None:
    """One CSV export per region for ``day`` (seeded by the day, so always the same files)."""
    rng = random.Random(day)
    folder.mkdir(parents=True, exist_ok=True)
    for region in REGIONS:
        tmp = folder / f".{region}.csv.tmp"
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(("order_id", "region", "amount_cents"))
            for i in range(rng.randint(50, 400)):
                writer.writerow((f"{region[:2]}-{i}", region, rng.randint(100, 20_000)))
        tmp.replace(folder / f"orders-{region}.csv")


@task
def list_files(ctx: Context, data_dir: str, day: str) -> list[str]:
    """The day's CSV files, sorted by name."""
    folder = Path(data_dir) / day
    if not folder.is_dir():
        write_sample_day(folder, day)
        ctx.log.info("wrote sample exports for %s in %s", day, folder)
    return sorted(str(p) for p in folder.glob("*.csv"))


@task(retries=2, retry_delay=1, concurrency=4)
def load_file(path: str, day: str) -> dict[str, Any]:
    """One file's rows and revenue (a real pipeline would load it into the warehouse here)."""
    with open(path, newline="", encoding="utf-8") as f:
        amounts = [int(row["amount_cents"]) for row in csv.DictReader(f)]
    return {"file": Path(path).name, "day": day, "rows": len(amounts), "cents": sum(amounts)}


@task
def summarize(loaded: list[dict[str, Any]], day: str) -> dict[str, Any]:
    """The day's totals over every file."""
    biggest = max(loaded, key=lambda f: f["cents"], default=None)
    return {
        "day": day,
        "files": len(loaded),
        "rows": sum(f["rows"] for f in loaded),
        "cents": sum(f["cents"] for f in loaded),
        "biggest_file": biggest["file"] if biggest else None,
    }


@dag(description="Loads every CSV export of a day, one mapped instance per file", tags=["example"])
def daily_files(day: str = "2026-11-25", data_dir: str = str(DATA_DIR)) -> None:
    summarize(load_file.map(list_files(data_dir, day), day=day), day)
