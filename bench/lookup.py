"""Buyer order lookup at scale: `GET /v1/orders/{order_code}` with millions of orders on PostgreSQL.

`run_lookup_bench` builds a complaints database at the migration head with `orders` orders (each
with 2-4 status changes, a few percent with a case), seeded on the server with
`INSERT ... SELECT ... FROM generate_series` and kept as a TEMPLATE database named from the order
count and the head, so later runs only copy it. It then starts the real complaints API (uvicorn,
the service's own entry point) on a copy and sends lookups open-loop: Poisson arrivals at `rate`
per second, latency counted from each request's scheduled time, random codes over the whole key
space (95 % hits, 5 % well-formed codes that do not exist). Each request carries a consumer token
for its order, the token a buyer gets from the one-time-code flow.

Only 127.0.0.1 is loaded; the working copy is dropped and the API stopped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session

from bench.load import RawHttp
from bench.report import percentile
from complaints import SERVICE_ROOT, repository
from complaints.orders import canonical_phone
from odr_shared.auth import TokenService
from odr_shared.crypto import DataCipher
from odr_shared.migrate import alembic_config, upgrade
from odr_shared.settings import ServiceSettings
from odr_shared.testing import (
    create_postgres_database,
    drop_postgres_database,
    free_port,
    postgres_database_url,
    wait_http,
)

LOCAL = "127.0.0.1"
PREFIX = "odr_lk"  # every database the bench creates starts with it (read at call time)
# Buyer data in the seeded rows is encrypted with this bench-only key material, and the API the
# bench starts reads it with the same key: a cached template stays readable from run to run.
BENCH_DATA_KEY = "odr-lookup-bench-data-key-not-for-real-data-7f3a91c2"
# Bump when the generated rows change shape: the template's name carries it.
SEED_VERSION = "v1"
HIT_SHARE = 0.95
BUYER_POOL = 10_000  # distinct (encrypted) buyers the orders draw from
MAX_IN_FLIGHT = 64
IDLE_REUSE_S = 2.0  # reuse a keep-alive connection idle for less (uvicorn closes them at 5 s)

# --- the key space -------------------------------------------------------------------------------
# Order n (0 <= n < orders) belongs to marketplace n % 4 and is that marketplace's k = n // 4-th
# order. Its code comes from s = (k * MULT + OFFSET) mod PRIME, a permutation of 0..PRIME-1, so
# codes are unique per marketplace, look random and land all over the index. Codes for n >= orders
# have the same shapes and exist nowhere: the misses.
PRIME = 999_999_937
MULT = 387_420_489
OFFSET = 12_345
BASE_DAY = date(2026, 11, 15)  # the newest order day: every time in the seed is past
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
MARKETPLACES = ("shopee", "lazada", "tiktokshop", "tiki")
PLATFORM_IDS = tuple("plt_" + hashlib.sha256(m.encode()).hexdigest()[:16] for m in MARKETPLACES)

# Status paths (by n's variant 0-9) and how a case's status is drawn.
STATUS_PATHS = (
    ("created", "cancelled"),
    ("created", "shipped"),
    ("created", "shipped"),
    ("created", "shipped", "delivered"),
    ("created", "shipped", "delivered"),
    ("created", "shipped", "delivered"),
    ("created", "paid", "shipped", "delivered"),
    ("created", "paid", "shipped", "delivered"),
    ("created", "paid", "shipped", "delivered"),
    ("created", "paid", "shipped", "completed"),
)
CASE_STATUSES = (
    "awaiting_merchant",
    "awaiting_merchant",
    "awaiting_merchant",
    "negotiating",
    "negotiating",
    "in_mediation",
    "resolved",
    "resolved",
    "closed",
    "withdrawn",
)
OPEN_CASE_STATUSES = ("awaiting_merchant", "negotiating", "escalated", "in_mediation")
CASE_PERCENT = 3
CATEGORIES = ("not_received", "not_as_described", "damaged", "wrong_item", "late_delivery")
OUTCOMES = ("refund", "partial_refund", "replacement", "return_and_refund")
DESCRIPTIONS = (
    "Đã quá hạn giao hàng hai tuần mà tôi vẫn chưa nhận được hàng.",
    "Sản phẩm nhận được khác với mô tả và hình ảnh trên trang.",
    "Hộp bị móp, sản phẩm bên trong bị vỡ khi nhận.",
    "Shop giao nhầm màu và nhầm kích cỡ so với đơn đặt.",
    "Tôi đã trả hàng nhưng chưa được hoàn tiền.",
)
PRODUCTS = (
    ("AO-THUN-01", "Áo thun cotton basic", 149_000),
    ("QUAN-JEAN-02", "Quần jean ống suông", 329_000),
    ("GIAY-SNK-03", "Giày sneaker trắng", 459_000),
    ("TAI-NGHE-04", "Tai nghe bluetooth không dây", 289_000),
    ("SAC-DP-05", "Sạc dự phòng 10000mAh", 219_000),
    ("OP-LUNG-06", "Ốp lưng điện thoại silicon", 59_000),
    ("NOI-CHIEN-07", "Nồi chiên không dầu 5L", 1_290_000),
    ("KEM-CN-08", "Kem chống nắng SPF50", 185_000),
    ("SUA-BOT-09", "Sữa bột trẻ em 800g", 545_000),
    ("BAN-PHIM-10", "Bàn phím cơ không dây", 899_000),
    ("BINH-GIU-11", "Bình giữ nhiệt 500ml", 129_000),
    ("DEN-LED-12", "Đèn bàn LED chống cận", 249_000),
    ("BALO-13", "Balo laptop chống nước", 379_000),
    ("CHUOT-14", "Chuột không dây", 159_000),
    ("DONG-HO-15", "Đồng hồ thông minh", 1_490_000),
    ("SACH-16", "Sách kỹ năng sống", 98_000),
)
SHOPS = (
    "Cửa hàng Minh Anh",
    "Shop Thời Trang Hà Nội",
    "Điện Máy Sài Gòn",
    "Mẹ và Bé Hạnh Phúc",
    "Phụ Kiện Số Tín Phát",
    "Gia Dụng Thông Minh",
    "Mỹ Phẩm Chính Hãng Lan",
    "Nhà Sách Phương Nam",
)
FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi")
MIDDLE = ("Văn", "Thị", "Minh", "Ngọc", "Thanh", "Hữu", "Đức", "Thu", "Quốc", "Hoài")
GIVEN = (
    *("An", "Bình", "Châu", "Dũng", "Giang", "Hà", "Hải", "Hương", "Khoa", "Lan", "Long", "Mai"),
    *("Nam", "Nhung", "Phong", "Quân", "Sơn", "Tâm", "Thảo", "Trang", "Tuấn", "Vy", "Yến"),
)
MAIL_HOSTS = ("gmail.com", "yahoo.com.vn", "outlook.com", "icloud.com")

TABLES = ("orders", "order_status_history", "cases")
_API_ARGV = (sys.executable, "-c", "from complaints.main import api; api()")


def _b32(value: int, digits: int) -> str:
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(digits)))


def order_platform(n: int) -> str:
    return PLATFORM_IDS[n % 4]


def order_code(n: int) -> str:
    """Order n's code, shaped like its marketplace's (the seed's SQL computes the same)."""
    k = n // 4
    s = (k * MULT + OFFSET) % PRIME
    kind = n % 4
    if kind == 0:  # 14 characters: the day, then letters and digits
        day = BASE_DAY - timedelta(days=_day(n))
        return day.strftime("%y%m%d") + _b32(s, 6) + _b32((k * 131) % 1024, 2)
    if kind == 1:  # 15 digits
        return f"3{s:09d}{(k * 7717) % 100_000:05d}"
    if kind == 2:  # 18 digits
        return f"57{s:09d}{(k * 104_729) % 10_000_000:07d}"
    return str(1_000_000_000 + s)  # 10 digits


def _day(n: int) -> int:
    return ((n // 4) * 37 + (n % 4) * 11) % 365


def _sql_b32(expr: str, digits: int) -> str:
    return " || ".join(
        f"substr('{CROCKFORD}', ((({expr}) >> {5 * i}) & 31)::int + 1, 1)"
        for i in reversed(range(digits))
    )


def _sql_text_array(values: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]::text[]"


def _seed_functions() -> list[str]:
    """SQL twins of order_code() and the per-order draws; dropped once the seed is done."""
    paths = " ".join(f"WHEN {i} THEN {_sql_text_array(p)}" for i, p in enumerate(STATUS_PATHS))
    platform_cases = " ".join(f"WHEN {i} THEN '{p}'" for i, p in enumerate(PLATFORM_IDS))
    fn = "LANGUAGE sql IMMUTABLE PARALLEL SAFE"
    return [
        f"CREATE FUNCTION lk_s(n bigint) RETURNS bigint {fn} AS "
        f"$$ SELECT ((n / 4) * {MULT} + {OFFSET}) % {PRIME} $$",
        f"CREATE FUNCTION lk_day(n bigint) RETURNS int {fn} AS "
        "$$ SELECT (((n / 4) * 37 + (n % 4) * 11) % 365)::int $$",
        f"CREATE FUNCTION lk_platform(n bigint) RETURNS text {fn} AS "
        f"$$ SELECT CASE n % 4 {platform_cases} END $$",
        f"CREATE FUNCTION lk_code(n bigint) RETURNS text {fn} AS $$ SELECT CASE n % 4"
        f" WHEN 0 THEN to_char(DATE '{BASE_DAY.isoformat()}' - lk_day(n), 'YYMMDD')"
        f" || {_sql_b32('lk_s(n)', 6)} || {_sql_b32('((n / 4) * 131) % 1024', 2)}"
        " WHEN 1 THEN '3' || lpad(lk_s(n)::text, 9, '0')"
        " || lpad((((n / 4) * 7717) % 100000)::text, 5, '0')"
        " WHEN 2 THEN '57' || lpad(lk_s(n)::text, 9, '0')"
        " || lpad((((n / 4) * 104729) % 10000000)::text, 7, '0')"
        " ELSE (1000000000 + lk_s(n))::text END $$",
        # When the order was placed: its day, at a time of day drawn from n.
        f"CREATE FUNCTION lk_created(n bigint) RETURNS timestamptz {fn} AS "
        f"$$ SELECT TIMESTAMPTZ '{BASE_DAY.isoformat()} 00:00:00+00' - make_interval(days => "
        "lk_day(n)) + make_interval(secs => ((n * 7919) % 86400)::int) $$",
        f"CREATE FUNCTION lk_path(n bigint) RETURNS text[] {fn} AS "
        f"$$ SELECT CASE ((n * 2654435761) % 4294967296) % 10 {paths} END $$",
    ]


# --- building the template -----------------------------------------------------------------------


def alembic_head() -> str:
    head = ScriptDirectory.from_config(alembic_config(SERVICE_ROOT, "sqlite://")).get_current_head()
    assert head is not None
    return head


def template_name(orders: int) -> str:
    return f"{PREFIX}_tpl_{orders}_{alembic_head()}_{SEED_VERSION}"


def _admin(admin_url: str) -> Engine:
    return create_engine(admin_url, isolation_level="AUTOCOMMIT")


def _database_comment(admin_url: str, name: str) -> str | None:
    engine = _admin(admin_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                    "WHERE datname = :n"
                ),
                {"n": name},
            ).first()
    finally:
        engine.dispose()
    if row is None:
        return None
    return str(row[0] or "{}")


def database_exists(admin_url: str, name: str) -> bool:
    return _database_comment(admin_url, name) is not None


def buyer_pool(cipher: DataCipher, size: int, seed: int = 7) -> list[dict[str, Any]]:
    """`size` buyers stored as the service stores them: encrypted, with the phone's lookup hash."""
    rng = random.Random(seed)
    rows = []
    for i in range(size):
        name = f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"
        phone = canonical_phone(
            rng.choice(("09", "03", "07", "08")) + f"{rng.randrange(10**8):08d}"
        )
        email = f"{name.split()[-1].lower()}.{i}@{rng.choice(MAIL_HOSTS)}".encode("ascii", "ignore")
        rows.append(
            {
                "i": i,
                "name_enc": cipher.encrypt(name),
                "phone_enc": cipher.encrypt(phone),
                "phone_hash": cipher.lookup_hash(phone),
                "email_enc": cipher.encrypt(email.decode()),
            }
        )
    return rows


@dataclass
class _Saved:
    """The seeded tables' indexes and constraints, dropped for the bulk load and put back."""

    foreign_keys: list[tuple[str, str, str]] = field(default_factory=list)
    keys: list[tuple[str, str, str]] = field(default_factory=list)
    indexes: list[tuple[str, str]] = field(default_factory=list)


def _drop_indexes(conn: Connection) -> _Saved:
    saved = _Saved()
    tables = {"t": list(TABLES)}
    rows = conn.execute(
        text(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype "
            "FROM pg_constraint c WHERE c.contype IN ('p', 'u', 'f') AND "
            "(c.conrelid::regclass::text = ANY(:t) OR "
            "(c.contype = 'f' AND c.confrelid::regclass::text = ANY(:t)))"
        ),
        tables,
    ).all()
    for table, name, definition, kind in rows:
        (saved.foreign_keys if kind == "f" else saved.keys).append((table, name, definition))
    for table, name, _ in saved.foreign_keys:
        conn.execute(text(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"'))
    for table, name, _ in saved.keys:
        conn.execute(text(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"'))
    for name, definition in conn.execute(
        text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(:t)"), tables
    ).all():
        saved.indexes.append((name, definition))
        conn.execute(text(f'DROP INDEX "{name}"'))
    return saved


def _restore_indexes(conn: Connection, saved: _Saved, log: Callable[[str], None]) -> None:
    for name, definition in saved.indexes:
        t0 = time.perf_counter()
        conn.execute(text(definition))
        log(f"  index {name}: {time.perf_counter() - t0:.1f} s")
    for table, name, definition in [*saved.keys, *saved.foreign_keys]:
        t0 = time.perf_counter()
        conn.execute(text(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}'))
        log(f"  constraint {name}: {time.perf_counter() - t0:.1f} s")


def _order_columns() -> str:
    shop_names = _sql_text_array(SHOPS)
    skus = _sql_text_array(tuple(p[0] for p in PRODUCTS))
    names = _sql_text_array(tuple(p[1] for p in PRODUCTS))
    prices = "ARRAY[" + ", ".join(str(p[2]) for p in PRODUCTS) + "]::int[]"
    np = len(PRODUCTS)
    # Only this module's constants go into the text; the row range is bound.
    return f"""
    SELECT x.oid, x.pid, x.code, x.path[x.h], x.created + make_interval(days => x.h - 1),
           b.name_enc, b.phone_enc, b.phone_hash,
           CASE WHEN x.n % 10 < 7 THEN b.email_enc END,
           'shop-' || x.shop, ({shop_names})[x.shop % {len(SHOPS)} + 1] || ' ' || x.shop,
           CASE WHEN x.two THEN json_build_array(
                  json_build_object('sku', ({skus})[x.p1], 'name', ({names})[x.p1],
                                    'quantity', x.q1, 'unit_price', ({prices})[x.p1]),
                  json_build_object('sku', ({skus})[x.p2], 'name', ({names})[x.p2],
                                    'quantity', 1, 'unit_price', ({prices})[x.p2]))
                ELSE json_build_array(
                  json_build_object('sku', ({skus})[x.p1], 'name', ({names})[x.p1],
                                    'quantity', x.q1, 'unit_price', ({prices})[x.p1])) END,
           x.q1 * ({prices})[x.p1] + CASE WHEN x.two THEN ({prices})[x.p2] ELSE 0 END,
           'VND', x.created + interval '2 seconds',
           x.created + make_interval(days => x.h - 1, secs => 3)
    FROM (SELECT n, oid, pid, code, path, cardinality(path) AS h, created,
                 ((n * 31) / 4 + n % 4 * 977) % 20000 AS shop,
                 (n * 13) % {np} + 1 AS p1, (n * 17 + 5) % {np} + 1 AS p2,
                 (n % 3) + 1 AS q1, n % 5 = 0 AS two
          FROM lk_seed OFFSET 0) AS x
    JOIN lk_buyers b ON b.i = (x.n * 7919) % {BUYER_POOL}
    """  # noqa: S608


def seed(url: str, orders: int, log: Callable[[str], None]) -> None:
    """Fill the migrated database at `url` with `orders` orders, their history and some cases."""
    cipher = DataCipher(BENCH_DATA_KEY)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SET maintenance_work_mem = '512MB'"))
            conn.execute(text("SET synchronous_commit = off"))
            for ddl in _seed_functions():
                conn.execute(text(ddl))
            conn.execute(
                text(
                    "CREATE TABLE lk_buyers (i int PRIMARY KEY, name_enc text, phone_enc text, "
                    "phone_hash text, email_enc text)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO lk_buyers VALUES (:i, :name_enc, :phone_enc, :phone_hash, "
                    ":email_enc)"
                ),
                buyer_pool(cipher, BUYER_POOL),
            )
            saved = _drop_indexes(conn)
            t0 = time.perf_counter()
            # Each order's code, path and time computed once, in a scratch table without WAL.
            conn.execute(
                text(
                    "CREATE UNLOGGED TABLE lk_seed AS SELECT n, pid || ':' || code AS oid, pid, "
                    "code, created, path FROM (SELECT n, lk_platform(n) AS pid, lk_code(n) AS "
                    "code, lk_created(n) AS created, lk_path(n) AS path "
                    "FROM generate_series(0, CAST(:last AS bigint)) AS g(n) OFFSET 0) AS x"
                ),
                {"last": orders - 1},
            )
            log(f"  codes ({time.perf_counter() - t0:.0f} s)")
            conn.execute(
                text(
                    "INSERT INTO orders (id, platform_id, order_code, status, status_at, "
                    "buyer_name_enc, buyer_phone_enc, buyer_phone_hash, buyer_email_enc, "
                    "seller_id, seller_name, items, total_amount, currency, first_seen_at, "
                    "updated_at) " + _order_columns()
                )
            )
            log(f"  orders ({time.perf_counter() - t0:.0f} s)")
            # One round per step of the orders' paths: an order's changes arrive days apart,
            # so its history rows sit in different parts of the table, as they do in service.
            for step in range(max(len(p) for p in STATUS_PATHS)):
                conn.execute(
                    text(
                        "INSERT INTO order_status_history "
                        "(order_id, status, status_at, event_id, recorded_at) "
                        "SELECT oid, path[CAST(:r AS int) + 1], "
                        "created + make_interval(days => :r), gen_random_uuid()::text, "
                        "created + make_interval(days => :r, secs => 3) "
                        "FROM lk_seed WHERE cardinality(path) > :r"
                    ),
                    {"r": step},
                )
                log(f"  history step {step + 1} ({time.perf_counter() - t0:.0f} s)")
            _seed_cases(conn)
            log(f"  cases ({time.perf_counter() - t0:.0f} s)")
            conn.execute(text("DROP TABLE lk_buyers, lk_seed"))
            for fn in ("lk_path", "lk_created", "lk_code", "lk_platform", "lk_day", "lk_s"):
                conn.execute(text(f"DROP FUNCTION {fn}(bigint)"))
            _restore_indexes(conn, saved, log)
            t1 = time.perf_counter()
            conn.execute(text("VACUUM ANALYZE"))
            log(f"  vacuum analyze: {time.perf_counter() - t1:.1f} s")
    finally:
        engine.dispose()


def _seed_cases(conn: Connection) -> None:
    statuses = _sql_text_array(CASE_STATUSES)
    categories = _sql_text_array(CATEGORIES)
    outcomes = _sql_text_array(OUTCOMES)
    descriptions = _sql_text_array(DESCRIPTIONS)
    open_statuses = _sql_text_array(OPEN_CASE_STATUSES)
    conn.execute(
        text(
            f"""
            INSERT INTO cases (id, reference, order_id, open_order_id, platform_id, order_code,
                seller_id, category, description, desired_outcome, claimed_amount, currency,
                language, status, opened_at, merchant_response_due_at, first_response_at,
                waiting_on_consumer_since, offer_rejected, deadline_missed_at, settled_by,
                decision, closed_at, updated_at)
            SELECT gen_random_uuid()::text,
                   'KN-2026-' || lpad(rn::text, greatest(6, length(rn::text)), '0'),
                   o.id, CASE WHEN st = ANY({open_statuses}) THEN o.id END,
                   o.platform_id, o.order_code, o.seller_id,
                   ({categories})[n % {len(CATEGORIES)} + 1],
                   ({descriptions})[n % {len(DESCRIPTIONS)} + 1],
                   ({outcomes})[n % {len(OUTCOMES)} + 1],
                   CASE WHEN n % 2 = 0 THEN o.total_amount END, 'VND', 'vi', st,
                   o.status_at + interval '2 days', o.status_at + interval '9 days',
                   CASE WHEN st <> 'awaiting_merchant' THEN o.status_at + interval '4 days' END,
                   NULL, false, NULL,
                   CASE WHEN st = 'resolved' THEN 'parties' END, NULL,
                   CASE WHEN st IN ('resolved', 'closed', 'withdrawn')
                        THEN o.status_at + interval '12 days' END,
                   o.status_at + interval '4 days'
            FROM (SELECT n, row_number() OVER (ORDER BY n) AS rn,
                         ({statuses})[(n / 4) % {len(CASE_STATUSES)} + 1] AS st, oid
                  FROM lk_seed WHERE ((n * 40503) % 65536) % 100 < {CASE_PERCENT}) AS c
            JOIN orders o ON o.id = c.oid
            """  # noqa: S608 - this module's constants only
        )
    )
    conn.execute(
        text(
            "INSERT INTO case_reference_counters (year, last_value) "
            "SELECT 2026, count(*) FROM cases"
        )
    )


def ensure_template(
    admin_url: str, orders: int, log: Callable[[str], None]
) -> tuple[str, float, bool]:
    """The template database for `orders` orders: (name, seconds its seed took, was it cached)."""
    name = template_name(orders)
    comment = _database_comment(admin_url, name)
    if comment is not None:
        seeded = json.loads(comment).get("seed_s", math.nan)
        log(f"template {name} is cached (seeded in {seeded:.0f} s)")
        return name, float(seeded), True
    build = f"{PREFIX}_build_{uuid.uuid4().hex[:8]}"
    create_postgres_database(admin_url, build)
    try:
        url = postgres_database_url(admin_url, build)
        log(f"seeding {orders:,} orders into {build} (migrated to {alembic_head()})")
        t0 = time.perf_counter()
        upgrade(SERVICE_ROOT, url)
        seed(url, orders, log)
        seed_s = round(time.perf_counter() - t0, 1)
        log(f"seeded {orders:,} orders in {seed_s:.0f} s")
        engine = _admin(admin_url)
        try:
            with engine.connect() as conn:
                if conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).first():
                    log(f"another run built {name} meanwhile: using it")
                    drop_postgres_database(admin_url, build)
                    return name, seed_s, True
                # Built under a scratch name and renamed when complete: a template is never
                # half-seeded, even if this run is interrupted.
                conn.execute(text(f'ALTER DATABASE "{build}" RENAME TO "{name}"'))
                conn.execute(text(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true'))
                note = json.dumps({"orders": orders, "seed_s": seed_s})
                conn.execute(text(f"COMMENT ON DATABASE \"{name}\" IS '{note}'"))
        finally:
            engine.dispose()
        return name, seed_s, False
    except BaseException:
        drop_postgres_database(admin_url, build)
        raise


def drop_template(admin_url: str, name: str) -> None:
    """Forget a cached template (it is marked as one, so it must be unmarked first)."""
    engine = _admin(admin_url)
    try:
        with engine.connect() as conn:
            if conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first():
                conn.execute(text(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false'))
    finally:
        engine.dispose()
    drop_postgres_database(admin_url, name)


@contextlib.contextmanager
def working_copy(admin_url: str, template: str) -> Iterator[str]:
    """A copy of the template to run against, dropped afterwards."""
    name = f"{PREFIX}_run_{uuid.uuid4().hex[:8]}"
    engine = _admin(admin_url)
    try:
        with engine.connect() as conn:
            version = int(conn.execute(text("SHOW server_version_num")).scalar_one())
            # FILE_COPY copies the files; the default (15+) writes the whole copy to the WAL.
            strategy = " STRATEGY FILE_COPY" if version >= 150000 else ""
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}'))
    finally:
        engine.dispose()
    try:
        yield name
    finally:
        drop_postgres_database(admin_url, name)


# --- the API and the load ------------------------------------------------------------------------


@contextlib.contextmanager
def complaints_api(database_url: str, jwt_secret: str, workdir: Path) -> Iterator[tuple[str, int]]:
    """The service's own API entry point on a free port; yields (base URL, pid)."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "ENVIRONMENT": "test",
            "COMPLAINTS_DATABASE_URL": database_url,
            "COMPLAINTS_STORAGE_DIR": str(workdir / "evidence"),
            "COMPLAINTS_PUBLIC_BASE_URL": f"http://{LOCAL}:{port}",
            "JWT_ALGORITHM": "HS256",
            "JWT_SECRET": jwt_secret,
            "DATA_ENCRYPTION_KEY": BENCH_DATA_KEY,
            # Production's settings (deploy/k8s): one uvicorn process, INFO, JSON logs, the
            # default connection pool. No broker is needed to read orders.
            "WEB_CONCURRENCY": "1",
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
            "KAFKA_BOOTSTRAP_SERVERS": f"{LOCAL}:{free_port()}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for var in ("DB_POOL_SIZE", "DB_MAX_OVERFLOW", "HOST", "PORT"):
        env.pop(var, None)
    logf = (workdir / "complaints-api.log").open("ab")
    proc = subprocess.Popen(
        [*_API_ARGV, "--host", LOCAL, "--port", str(port)],
        env=env,
        stdout=logf,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://{LOCAL}:{port}"
        try:
            wait_http(f"{url}/healthz", timeout_s=60)
        except Exception as exc:
            tail = (workdir / "complaints-api.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the complaints API did not start:\n{tail}") from exc
        yield url, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        logf.close()


@dataclass
class Lookup:
    code: str
    hit: bool
    raw: bytes


def plan_lookups(
    orders: int, count: int, token: Callable[[str, str], str], port: int, rng: random.Random
) -> list[Lookup]:
    """`count` lookups of random orders; a few are well-formed codes that do not exist."""
    out = []
    for _ in range(count):
        n = rng.randrange(orders)
        platform, code = order_platform(n), order_code(n)
        bearer = token(platform, code)  # the buyer's token for their order
        hit = rng.random() < HIT_SHARE
        if not hit:
            # The same buyer mistypes: a code of the same shape, in no order.
            code = order_code(n + 4 * orders * (1 + rng.randrange(4)))
        raw = (
            f"GET /v1/orders/{code} HTTP/1.1\r\nhost: {LOCAL}:{port}\r\n"
            f"authorization: Bearer {bearer}\r\naccept: application/json\r\n\r\n"
        ).encode()
        out.append(Lookup(code, hit, raw))
    return out


async def open_loop(
    port: int, lookups: list[Lookup], at: list[float], timeout_s: float = 30
) -> list[tuple[float, int]]:
    """Send lookup i at offset at[i] whatever came back before; (latency ms, status) each.

    Latency counts from the scheduled time, so waiting for one of the MAX_IN_FLIGHT keep-alive
    connections counts against the server too (no coordinated omission). Status 0: no answer.
    """
    # Idle keep-alive connections, most recently used last, with the time each went idle.
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
    opened: list[asyncio.StreamWriter] = []
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    results: list[tuple[float, int]] = [(math.nan, 0)] * len(lookups)

    async def connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        while idle:
            reader, writer, since = idle.pop()
            if time.perf_counter() - since < IDLE_REUSE_S:
                return reader, writer, True
            writer.close()  # the server may be closing it: keep-alive timeout
        reader, writer = await asyncio.open_connection(LOCAL, port)
        opened.append(writer)
        return reader, writer, False

    async def one(i: int, scheduled: float) -> None:
        async with gate:
            for _attempt in range(2):
                try:
                    reader, writer, reused = await connection()
                    status, _ = await asyncio.wait_for(
                        RawHttp._exchange(reader, writer, lookups[i].raw), timeout_s
                    )
                except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
                    # A reused connection the server closed meanwhile: once more on a new
                    # one, as HTTP clients do. Anything else is an error.
                    if _attempt == 0 and reused and not isinstance(exc, TimeoutError):
                        continue
                    return
                idle.append((reader, writer, time.perf_counter()))
                results[i] = ((time.perf_counter() - scheduled) * 1000, status)
                return

    start = time.perf_counter()
    tasks = []
    try:
        for i, offset in enumerate(at):
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, start + offset)))
        await asyncio.gather(*tasks)
    finally:
        for writer in opened:
            writer.close()
    return results


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds process `pid` has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def poisson_schedule(rate: float, seconds: float, rng: random.Random) -> list[float]:
    at, t = [], rng.expovariate(rate)
    while t < seconds:
        at.append(t)
        t += rng.expovariate(rate)
    return at


# --- plans ---------------------------------------------------------------------------------------


def explain_lookup(database_url: str) -> tuple[list[str], bool, int]:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement the endpoint runs, for an order with a case.

    The statements are the ones the service's own repository code emits (captured at the
    cursor), so the plans are those of the endpoint. Returns the plan lines, whether every
    table was reached through an index, and how many statements one lookup runs (besides the
    pool's liveness check when it hands out a connection).
    """
    engine = create_engine(database_url)
    captured: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        captured.append((statement, params))

    try:
        with engine.connect() as conn:
            picked = (
                conn.execute(
                    text(
                        "SELECT platform_id, order_code, order_id FROM cases "
                        "WHERE id > :a ORDER BY id LIMIT 1"
                    ),
                    {"a": str(uuid.uuid4())},
                ).first()
                or conn.execute(
                    text("SELECT platform_id, order_code, order_id FROM cases ORDER BY id LIMIT 1")
                ).first()
            )
            # A second order with a case, not read yet: its plan shows what the disk and the
            # caches give a lookup, not the pages the capture below has just read.
            other = conn.execute(
                text(
                    "SELECT platform_id, order_code, order_id FROM cases "
                    "WHERE id < :a ORDER BY id DESC LIMIT 1"
                ),
                {"a": str(uuid.uuid4())},
            ).first()
        assert picked is not None, "the seeded database has no case"
        event.listen(engine, "before_cursor_execute", capture)
        with Session(engine) as session:
            orders = repository.find_orders(session, picked.order_code, picked.platform_id)
            repository.cases_for_order(session, orders[0].id)
        event.remove(engine, "before_cursor_execute", capture)
        if other is not None and other.order_id != picked.order_id:
            swap = dict(zip(picked, other, strict=True))
            captured = [(st, _swap_params(params, swap)) for st, params in captured]
        labels = ("order", "history", "cases")
        lines: list[str] = []
        indexed = True
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            for label, (statement, params) in zip(labels, captured, strict=True):
                cur.execute(
                    "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + statement,
                    params,
                )
                plan = [str(r[0]).strip() for r in cur.fetchall()]
                indexed &= not any("Seq Scan" in p for p in plan)
                lines += [f"{label}: {p}" for p in plan]
            raw.rollback()
        finally:
            raw.close()
        return lines, indexed, len(captured)
    finally:
        engine.dispose()


def _swap_params(params: Any, swap: dict[Any, Any]) -> Any:
    if isinstance(params, dict):
        return {k: swap.get(v, v) for k, v in params.items()}
    return type(params)(swap.get(v, v) for v in params)


# --- the entry point -----------------------------------------------------------------------------


def run_lookup_bench(
    *,
    postgres_url: str,
    orders: int,
    rate: float,
    seconds: float,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Seed (or copy) `orders` orders, start the complaints API on them and measure lookups.

    `postgres_url` is an admin URL of the server (the bench creates its databases through it).
    """
    if make_url(postgres_url).host not in (LOCAL, "localhost", None):
        raise ValueError("the lookup bench only runs against a local PostgreSQL")
    template, seed_s, cached = ensure_template(postgres_url, orders, log)
    rng = random.Random(20261202)
    jwt_secret = secrets.token_urlsafe(48)
    with contextlib.ExitStack() as stack:
        t0 = time.perf_counter()
        work = stack.enter_context(working_copy(postgres_url, template))
        copy_s = time.perf_counter() - t0
        log(f"working copy {work} of {template} in {copy_s:.1f} s")
        url = postgres_database_url(postgres_url, work)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="odr-lk-")))
        base, pid = stack.enter_context(complaints_api(url, jwt_secret, workdir))
        port = int(httpx.URL(base).port or 80)
        tokens = _token_service(jwt_secret)

        def token(platform: str, code: str) -> str:
            return tokens.issue(
                role="consumer",
                subject=f"consumer:{uuid.uuid4()}",
                ttl=timedelta(hours=1),
                order_id=f"{platform}:{code}",
                platform_id=platform,
            )

        _check_one(base, token, orders, rng)
        # A short warm-up opens the API's connection pool; its answers are not counted.
        warm = plan_lookups(orders, max(20, int(rate)), token, port, rng)
        asyncio.run(open_loop(port, warm, [i / (2 * len(warm)) for i in range(len(warm))]))
        at = poisson_schedule(rate, seconds, rng)
        lookups = plan_lookups(orders, len(at), token, port, rng)  # not part of the load
        log(f"lookups: {len(at)} over {seconds:.0f} s at {rate:g}/s (Poisson), {orders:,} orders")
        t1, server0, client0 = time.perf_counter(), _cpu_s(pid), time.process_time()
        results = asyncio.run(open_loop(port, lookups, at))
        elapsed = time.perf_counter() - t1
        server_cpu, client_cpu = _cpu_s(pid) - server0, time.process_time() - client0
        plan, indexed, statements = explain_lookup(url)
    latencies = [ms for ms, status in results if status in (200, 404)]
    statuses: dict[str, int] = {}
    for (_, status), lk in zip(results, lookups, strict=True):
        key = f"{'hit' if lk.hit else 'miss'}_{status}"
        statuses[key] = statuses.get(key, 0) + 1
    errors = sum(1 for _, status in results if status not in (200, 404))
    out = {
        "lookup_p99_ms_10m_orders": round(percentile(latencies, 99), 2),
        "lookup_p50_ms": round(percentile(latencies, 50), 2),
        "lookup_max_ms": round(max(latencies), 2) if latencies else math.nan,
        "lookup_orders": orders,
        "lookup_rate_per_s": rate,
        "lookup_achieved_per_s": round(len(latencies) / elapsed, 1),
        "lookup_requests": len(results),
        "lookup_errors": errors,
        "lookup_statuses": dict(sorted(statuses.items())),
        "lookup_seed_s": seed_s,
        "lookup_seed_cached": cached,
        "lookup_copy_s": round(copy_s, 1),
        "lookup_template": template,
        "lookup_database": work,
        "lookup_api_pid": pid,
        # CPU per lookup holds on a noisy machine where latencies do not.
        "lookup_server_cpu_ms_per_request": round(server_cpu * 1000 / max(1, len(results)), 2),
        "lookup_client_cpu_ms_per_request": round(client_cpu * 1000 / max(1, len(results)), 2),
        "lookup_statements_per_request": statements,
        "lookup_plan": plan,
        "lookup_plan_indexed": indexed,
    }
    log(
        f"lookup: p50 {out['lookup_p50_ms']} ms, p99 {out['lookup_p99_ms_10m_orders']} ms, "
        f"{errors} errors, {statuses}"
    )
    return out


def _token_service(jwt_secret: str) -> TokenService:
    # The API the bench starts gets the same secret explicitly, whatever this process's env says.
    return TokenService(ServiceSettings(jwt_secret=jwt_secret, jwt_algorithm="HS256"))


def _check_one(
    base: str, token: Callable[[str, str], str], orders: int, rng: random.Random
) -> None:
    """One lookup read back in full before the load: the seeded order as a buyer sees it."""
    n = rng.randrange(orders)
    platform, code = order_platform(n), order_code(n)
    r = httpx.get(
        f"{base}/v1/orders/{code}",
        headers={"authorization": f"Bearer {token(platform, code)}"},
        timeout=30,
    )
    if r.status_code != 200:
        raise RuntimeError(f"lookup of a seeded order answered {r.status_code}: {r.text[:300]}")
    body = r.json()
    if body["order_code"] != code or not 2 <= len(body["history"]) <= 4:
        raise RuntimeError(f"unexpected order view: {body}")
    if "*" not in body["buyer"]["phone"]:
        raise RuntimeError("the buyer's phone came back unmasked")
