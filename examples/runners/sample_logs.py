"""A day of API-gateway access logs, rotated hourly into gzip files, as a log shipper leaves them:
``<folder>/access-<day>T<HH>.log.gz``, 24 of them.

Each line is nginx's combined format followed by the request time in seconds::

    203.0.113.7 - - [25/Nov/2026:14:03:22 +0000] "GET /api/v1/orders/4711 HTTP/1.1" 200 5123 "-" "acme-ios/3.6.0 (iPhone; iOS 18.1)" 0.042

The traffic is made up but shaped like the real thing: a handful of endpoints with their own
latency and error rates, a payments incident at 14:00 (one 5xx in five), the company's apps in
several versions (among them Android hotfix and nightly builds whose version strings are not PEP
440), browsers, bots and scripts, and one line in a thousand cut short by the shipper. Everything is
seeded by the day and the hour, so a day always gives the same files.

This module imports nothing from the engine.
"""

from __future__ import annotations

import gzip
import math
import random
from datetime import date
from pathlib import Path

INCIDENT_HOUR = 14  # the hour the payment provider was failing

# method, path template, weight, median latency (ms), share of 5xx
ENDPOINTS = (
    ("GET", "/api/v1/orders?page={page}", 20, 35, 0.002),
    ("GET", "/api/v1/orders/{id}", 25, 18, 0.001),
    ("POST", "/api/v1/orders", 8, 90, 0.004),
    ("GET", "/api/v1/customers/{id}", 15, 22, 0.001),
    ("GET", "/api/v1/products?category={category}", 12, 60, 0.002),
    ("GET", "/api/v1/products/{id}", 10, 12, 0.001),
    ("POST", "/api/v1/payments", 5, 320, 0.01),
    ("GET", "/healthz", 5, 2, 0.0),
)
CATEGORIES = ("books", "garden", "kitchen", "toys", "sports")

# (platform, version, device, weight): the company's own apps; the other agents are everyone else
CLIENTS = (
    ("ios", "3.6.0", "iPhone; iOS 18.1", 30),
    ("ios", "3.5.2", "iPhone; iOS 17.6", 18),
    ("ios", "3.5.0", "iPad; iOS 17.2", 6),
    ("ios", "3.4.1", "iPhone; iOS 16.7", 3),
    ("ios", "3.6.1-beta.2", "iPhone; iOS 18.2", 2),
    ("android", "3.6.0", "Linux; Android 15", 22),
    ("android", "3.5.2", "Linux; Android 14", 14),
    ("android", "3.5.2-hotfix_4", "Linux; Android 14", 5),
    ("android", "3.4.0", "Linux; Android 12", 3),
    ("android", "3.3.9", "Linux; Android 11", 1),
    ("android", "nightly-20261124", "Linux; Android 15", 1),
    ("web", "2026.11.24", "Web; Chrome 131", 25),
    ("web", "2026.11.3", "Web; Firefox 133", 6),
    ("web", "2026.10.28rc1", "Web; Safari 18", 1),
)
OTHER_AGENTS = (
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0", 10),
    ("curl/8.5.0", 3),
    ("python-requests/2.32.3", 4),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 2),
)
SUBNETS = ("203.0.113", "198.51.100", "192.0.2", "100.64.12", "100.64.13", "172.16.40")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def chunk_name(day: str, hour: int) -> str:
    return f"access-{day}T{hour:02d}.log.gz"


def write_sample_day(folder: Path, day: str, lines_per_hour: int) -> list[Path]:
    """Write the day's 24 hourly files into ``folder`` (each renamed into place once complete);
    the paths, in hour order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for hour in range(24):
        path = folder / chunk_name(day, hour)
        tmp = path.with_name(f".{path.name}.tmp")
        lines = hour_of_traffic(day, hour, lines_per_hour)
        # mtime=0: the same lines give the same bytes, so the same checksum, every time
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write("".join(lines).encode("utf-8"))
        tmp.replace(path)
        paths.append(path)
    return paths


def hour_of_traffic(day: str, hour: int, lines: int) -> list[str]:
    """``lines`` log lines of one hour, in time order."""
    rng = random.Random(f"{day}T{hour:02d}")
    d = date.fromisoformat(day)
    stamp = f"{d.day:02d}/{MONTHS[d.month - 1]}/{d.year}:{hour:02d}"
    endpoint_weights = [e[2] for e in ENDPOINTS]
    agents = [_agent(c) for c in CLIENTS] + [a for a, _ in OTHER_AGENTS]
    agent_weights = [c[3] for c in CLIENTS] + [w for _, w in OTHER_AGENTS]
    out = []
    for second in sorted(rng.randrange(3600) for _ in range(lines)):
        method, template, _, median_ms, error_rate = rng.choices(ENDPOINTS, endpoint_weights)[0]
        if hour == INCIDENT_HOUR and template == "/api/v1/payments":
            error_rate = 0.2
        path = template.format(
            id=rng.randint(1, 99_999), page=rng.randint(1, 40), category=rng.choice(CATEGORIES)
        )
        if rng.random() < error_rate:
            status, size = rng.choice((500, 502, 503, 504)), rng.randint(150, 400)
        elif "{id}" in template and rng.random() < 0.03:
            status, size = 404, rng.randint(150, 300)
        else:
            status, size = (201 if method == "POST" else 200), rng.randint(300, 40_000)
        seconds = max(0.001, rng.lognormvariate(math.log(median_ms / 1000), 0.7))
        line = (
            f"{rng.choice(SUBNETS)}.{rng.randint(1, 254)} - - "
            f'[{stamp}:{second // 60:02d}:{second % 60:02d} +0000] "{method} {path} HTTP/1.1" '
            f'{status} {size} "-" "{rng.choices(agents, agent_weights)[0]}" {seconds:.3f}'
        )
        if rng.random() < 0.001:  # the shipper cut the line short, before its last quote
            line = line[: rng.randint(10, line.rindex('"') - 1)]
        out.append(line + "\n")
    return out


def _agent(client: tuple[str, str, str, int]) -> str:
    platform, version, device, _ = client
    return f"acme-{platform}/{version} ({device})"
