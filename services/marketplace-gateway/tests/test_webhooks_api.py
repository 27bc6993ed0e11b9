"""Webhooks over HTTP for every kind: acks, rejections kept, duplicates, merges, limits, replay."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from sqlalchemy import create_engine, text

from gateway.settings import GatewaySettings
from odr_shared.testing import sample_order, standard_webhook_headers

PHONE = "0912345678"


def standard_body(order: dict[str, Any], type_: str = "order.updated") -> bytes:
    return json.dumps(
        {"type": type_, "timestamp": "2026-11-20T03:00:00Z", "data": order}, ensure_ascii=False
    ).encode()


def post_standard(gw, platform, body: bytes, **kw):
    headers = standard_webhook_headers(platform["webhook_secret"], body, **kw)
    return gw.client.post(f"/v1/webhooks/{platform['platform_id']}", content=body, headers=headers)


def code() -> str:
    return f"DH{uuid.uuid4().hex[:8].upper()}"


# -- standard ----------------------------------------------------------------------------------


def test_standard_delivery_is_stored_and_queued_for_orders_events(gw) -> None:
    p = gw.register()
    c = code()
    r = post_standard(gw, p, standard_body(sample_order(c)))
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "accepted"
    (msg,) = gw.outbox()
    assert msg["key"] == f"{p['platform_id']}:{c}"
    data = msg["event"]["data"]
    assert msg["type"] == "order.status_changed"
    assert data["status"] == "delivered"
    assert data["buyer"]["phone"] == PHONE
    assert data["delivery_id"] == str(r.json()["delivery_id"])
    assert msg["event"]["id"] == r.json()["event_id"]


def test_same_delivery_id_twice_has_one_effect(gw) -> None:
    p = gw.register()
    body = standard_body(sample_order(code()))
    first = post_standard(gw, p, body, msg_id="msg_same")
    again = post_standard(gw, p, body, msg_id="msg_same")
    assert first.status_code == again.status_code == 202
    assert again.json()["duplicate"] is True
    assert again.json()["delivery_id"] == first.json()["delivery_id"]
    assert len(gw.outbox()) == 1


def test_same_platform_event_under_a_new_delivery_id_has_one_effect(gw) -> None:
    p = gw.register()
    body = standard_body(sample_order(code()))
    post_standard(gw, p, body)
    again = post_standard(gw, p, body)  # a fresh webhook-id, same order content
    assert again.status_code == 202
    assert again.json()["status"] == "duplicate"
    assert len(gw.outbox()) == 1
    statuses = [d["status"] for d in gw.inbound(p["platform_id"])]
    assert statuses == ["duplicate", "accepted"]


def test_bad_stale_and_tampered_signatures_are_401_and_kept(gw) -> None:
    p = gw.register()
    body = standard_body(sample_order(code()))
    wrong = standard_webhook_headers("whsec_" + "A" * 44, body)
    stale = standard_webhook_headers(p["webhook_secret"], body, timestamp=int(time.time()) - 600)
    good = standard_webhook_headers(p["webhook_secret"], body)
    url = f"/v1/webhooks/{p['platform_id']}"
    assert gw.client.post(url, content=body, headers=wrong).status_code == 401
    r = gw.client.post(url, content=body, headers=stale)
    assert r.status_code == 401
    assert "tolerance" in r.json()["detail"]
    assert r.headers["content-type"].startswith("application/problem+json")
    tampered = body.replace(b"delivered", b"cancelled")
    assert gw.client.post(url, content=tampered, headers=good).status_code == 401
    assert gw.client.post(url, content=body, headers={}).status_code == 401
    assert gw.outbox() == []
    rejected = gw.inbound(p["platform_id"], status="rejected")
    assert len(rejected) == 4
    assert {d["http_status"] for d in rejected} == {401}
    # Signatures are not kept in the log.
    assert all("webhook-signature" not in d["headers"] for d in rejected)
    assert all("webhook-id" in d["headers"] for d in rejected[1:])


def test_malformed_body_is_422_naming_the_field_and_kept_masked(gw, settings) -> None:
    p = gw.register()
    bad = standard_body(sample_order(code(), status="teleported"))
    r = post_standard(gw, p, bad)
    assert r.status_code == 422
    problem = r.json()
    assert problem["errors"][0]["field"] == "data.status"
    assert problem["detail"].startswith("data.status")
    (row,) = gw.inbound(p["platform_id"], status="rejected", with_body=True)
    assert row["id"] == problem["delivery_id"]
    assert row["http_status"] == 422
    assert "data.status" in row["error"]
    # The log shows the body with personal data masked.
    assert row["body"]["data"]["status"] == "teleported"
    assert PHONE not in json.dumps(row, ensure_ascii=False)
    assert "an.nguyen@example.vn" not in json.dumps(row, ensure_ascii=False)
    # ... and stores it encrypted: nothing in the database holds the phone in clear.
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        for table in ("inbound_deliveries", "order_snapshots"):
            for rec in conn.execute(text(f"SELECT * FROM {table}")):  # noqa: S608
                assert PHONE.encode() not in repr(tuple(rec)).encode()
    engine.dispose()


def test_body_that_is_not_json_is_400(gw) -> None:
    p = gw.register()
    r = post_standard(gw, p, b"{oops")
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "body"
    assert gw.inbound(p["platform_id"])[0]["status"] == "rejected"


def test_standard_partial_update_merges_with_the_known_order(gw) -> None:
    p = gw.register()
    c = code()
    post_standard(gw, p, standard_body(sample_order(c, status="shipped")))
    status_only = {"order_code": c, "status": "delivered", "status_at": "2026-11-21T03:00:00Z"}
    r = post_standard(gw, p, standard_body(status_only))
    assert r.status_code == 202, r.text
    last = gw.outbox()[-1]["event"]["data"]
    assert last["status"] == "delivered"
    assert last["buyer"]["phone"] == PHONE
    assert last["items"][0]["sku"] == "AO-01"


def test_standard_partial_update_for_an_unknown_order_names_the_missing_fields(gw) -> None:
    p = gw.register()
    status_only = {"order_code": code(), "status": "paid", "status_at": "2026-11-21T03:00:00Z"}
    r = post_standard(gw, p, standard_body(status_only))
    assert r.status_code == 422
    fields = [e["field"] for e in r.json()["errors"]]
    assert fields == ["data.buyer", "data.seller", "data.total_amount"]
    assert gw.inbound(p["platform_id"])[0]["status"] == "rejected"


def test_unknown_platform_is_404(gw) -> None:
    body = standard_body(sample_order(code()))
    r = gw.client.post("/v1/webhooks/plt_nope", content=body, headers={})
    assert r.status_code == 404


# -- marketplaces ------------------------------------------------------------------------------


def shopee_body(order_code: str, status: str, update_time: int) -> bytes:
    return json.dumps(
        {
            "msg_id": uuid.uuid4().hex,
            "data": {
                "completed_scenario": None,
                "items": [],
                "ordersn": order_code,
                "status": status,
                "update_time": update_time,
            },
            "shop_id": 336094210,
            "code": 3,
            "timestamp": update_time + 1,
        }
    ).encode()


def post_shopee(gw, p, body: bytes, secret: str | None = None, url: str | None = None):
    push_url = url or f"http://gateway.test/v1/webhooks/{p['platform_id']}"
    sig = gw.hex_hmac(secret or p["signing_secret"], push_url.encode() + b"|" + body)
    return gw.client.post(
        f"/v1/webhooks/{p['platform_id']}",
        content=body,
        headers={"Authorization": sig, "Content-Type": "application/json"},
    )


def test_shopee_push_is_acked_with_an_empty_2xx_and_merged_with_the_order(gw) -> None:
    p = gw.register("shopee")
    c = code()
    assert gw.put_order(p["platform_id"], sample_order(c, status="paid")).status_code == 200
    # 2026-11-21T00:00:00Z: after the order's status_at, so the pushed status is the news.
    r = post_shopee(gw, p, shopee_body(c, "SHIPPED", 1795219200))
    assert r.status_code == 200
    assert r.content == b""
    events = [m["event"]["data"] for m in gw.outbox()]
    assert [e["status"] for e in events] == ["paid", "shipped"]
    shipped = events[-1]
    assert shipped["platform_kind"] == "shopee"
    assert shipped["buyer"]["phone"] == PHONE
    assert shipped["items"] == events[0]["items"]
    assert shipped["total_amount"] == 300000


def test_shopee_push_before_the_order_is_held_then_published_with_it(gw) -> None:
    p = gw.register("shopee")
    c = code()
    r = post_shopee(gw, p, shopee_body(c, "SHIPPED", 1795219200))
    assert r.status_code == 200
    assert gw.outbox() == []
    assert gw.inbound(p["platform_id"])[0]["status"] == "held"
    gw.put_order(p["platform_id"], sample_order(c, status="paid"))
    (msg,) = gw.outbox()
    # The newer pushed status wins over the order's older one.
    assert msg["event"]["data"]["status"] == "shipped"
    assert msg["event"]["data"]["buyer"]["phone"] == PHONE


def test_shopee_signature_covers_push_url_and_body(gw) -> None:
    p = gw.register("shopee", push_url="https://odr.example.vn/hooks/shopee")
    body = shopee_body(code(), "SHIPPED", 1795219200)
    ok = post_shopee(gw, p, body, url="https://odr.example.vn/hooks/shopee")
    assert ok.status_code == 200
    assert post_shopee(gw, p, body, url="https://elsewhere.example/hook").status_code == 401
    assert post_shopee(gw, p, body, secret="wrong-partner-key").status_code == 401
    tampered = body.replace(b"SHIPPED", b"CANCELLED")
    sig = gw.hex_hmac(p["signing_secret"], b"https://odr.example.vn/hooks/shopee|" + body)
    r = gw.client.post(
        f"/v1/webhooks/{p['platform_id']}", content=tampered, headers={"Authorization": sig}
    )
    assert r.status_code == 401
    assert len(gw.inbound(p["platform_id"], status="rejected")) == 3


def test_shopee_same_event_in_two_pushes_has_one_effect(gw) -> None:
    p = gw.register("shopee")
    c = code()
    gw.put_order(p["platform_id"], sample_order(c, status="paid"))
    post_shopee(gw, p, shopee_body(c, "SHIPPED", 1795219200))
    # Shopee re-sends the change under a new msg_id.
    assert post_shopee(gw, p, shopee_body(c, "SHIPPED", 1795219200)).status_code == 200
    assert [m["event"]["data"]["status"] for m in gw.outbox()] == ["paid", "shipped"]


def lazada_body(order_code: str, status: str, line: str, t: int = 1795219200) -> bytes:
    return json.dumps(
        {
            "seller_id": "1234567",
            "message_type": 0,
            "data": {
                "order_status": status,
                "trade_order_id": order_code,
                "trade_order_line_id": line,
                "status_update_time": t,
            },
            "timestamp": t * 1000 + 500,
            "site": "lazada_vn",
        }
    ).encode()


def test_lazada_push_two_lines_one_effect_and_bad_signature(gw) -> None:
    p = gw.register("lazada")
    c = "260422900198363"
    gw.put_order(p["platform_id"], sample_order(c, status="paid"))
    url = f"/v1/webhooks/{p['platform_id']}"
    for line in ("1", "2"):
        body = lazada_body(c, "shipped", line)
        sig = gw.hex_hmac(p["signing_secret"], p["app_key"].encode() + body)
        r = gw.client.post(url, content=body, headers={"Authorization": sig})
        assert r.status_code == 200
    assert [m["event"]["data"]["status"] for m in gw.outbox()] == ["paid", "shipped"]
    body = lazada_body(c, "delivered", "1")
    no_app_key = gw.hex_hmac(p["signing_secret"], body)
    assert (
        gw.client.post(url, content=body, headers={"Authorization": no_app_key}).status_code == 401
    )


def tiktok_body(order_code: str, type_: int, **data: Any) -> bytes:
    return json.dumps(
        {
            "type": type_,
            "tts_notification_id": uuid.uuid4().hex,
            "shop_id": "7494049642642441621",
            "timestamp": 1795219300,
            "data": {"order_id": order_code, "update_time": 1795219200, **data},
        }
    ).encode()


def test_tiktok_order_and_return_webhooks(gw) -> None:
    p = gw.register("tiktok")
    c = "576461413038785752"
    gw.put_order(p["platform_id"], sample_order(c, status="delivered"))
    url = f"/v1/webhooks/{p['platform_id']}"

    def send(body: bytes, app_key: str = p["app_key"]) -> int:
        sig = gw.hex_hmac(p["signing_secret"], app_key.encode() + body)
        return gw.client.post(url, content=body, headers={"Authorization": sig}).status_code

    assert send(tiktok_body(c, 1, order_status="COMPLETED")) == 200
    ret = tiktok_body(
        c,
        12,
        return_id="4035246029464310398",
        return_status="RETURN_OR_REFUND_REQUEST_PENDING",
        return_type="RETURN_AND_REFUND",
        update_time=1795305600,
    )
    assert send(ret) == 200
    assert send(tiktok_body(c, 1, order_status="COMPLETED"), app_key="other") == 401
    assert [m["event"]["data"]["status"] for m in gw.outbox()] == [
        "delivered",
        "completed",
        "return_requested",
    ]


def shop_order_body(status_fields: dict[str, Any]) -> bytes:
    order = {
        "id": 820982911946154508,
        "name": "#1001",
        "order_number": 1001,
        "updated_at": "2026-11-20T11:00:00+07:00",
        "financial_status": "paid",
        "currency": "VND",
        "total_price": "300000.00",
        "customer": {"first_name": "An", "last_name": "Nguyễn Văn", "phone": PHONE},
        "line_items": [{"sku": "AO-01", "title": "Áo thun", "quantity": 2, "price": "150000"}],
        **status_fields,
    }
    return json.dumps(order, ensure_ascii=False).encode()


def test_shopify_haravan_sapo_full_order_webhooks(gw) -> None:
    headers = {
        "shopify": ("X-Shopify-Hmac-Sha256", "X-Shopify-Topic"),
        "haravan": ("X-Haravan-Hmacsha256", "X-Haravan-Topic"),
        "sapo": ("X-Sapo-Hmac-Sha256", "X-Sapo-Topic"),
    }
    for kind, (sig_header, topic_header) in headers.items():
        p = gw.register(kind)
        body = shop_order_body({"fulfillment_status": "fulfilled"})
        url = f"/v1/webhooks/{p['platform_id']}"
        good = {
            sig_header: gw.b64_hmac(p["signing_secret"], body),
            topic_header: "orders/fulfilled",
        }
        r = gw.client.post(url, content=body, headers=good)
        assert r.status_code == 200, (kind, r.text)
        bad = {**good, sig_header: gw.b64_hmac("not-the-secret", body)}
        assert gw.client.post(url, content=body, headers=bad).status_code == 401
        hexed = {**good, sig_header: gw.hex_hmac(p["signing_secret"], body)}
        assert gw.client.post(url, content=body, headers=hexed).status_code == 401
    events = [m["event"]["data"] for m in gw.outbox()]
    assert [e["platform_kind"] for e in events] == ["shopify", "haravan", "sapo"]
    assert {e["status"] for e in events} == {"shipped"}
    assert all(e["buyer"]["phone"] == PHONE and e["order_code"] == "1001" for e in events)


# -- limits ------------------------------------------------------------------------------------


def test_body_over_the_limit_is_413_and_logged(gw, make_client, admin) -> None:
    p = gw.register()
    small = make_client(max_body_bytes=200)
    body = standard_body(sample_order(code()))
    headers = standard_webhook_headers(p["webhook_secret"], body)
    r = small.post(f"/v1/webhooks/{p['platform_id']}", content=body, headers=headers)
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")
    (row,) = gw.inbound(p["platform_id"], status="rejected")
    assert row["http_status"] == 413


def test_rate_limit_answers_429_with_retry_after(gw, make_client) -> None:
    p = gw.register()
    limited = make_client(webhook_rate_limit=2, webhook_rate_window_s=3600)
    url = f"/v1/webhooks/{p['platform_id']}"
    codes = []
    for _ in range(3):
        body = standard_body(sample_order(code()))
        headers = standard_webhook_headers(p["webhook_secret"], body)
        codes.append(limited.post(url, content=body, headers=headers))
    assert [r.status_code for r in codes] == [202, 202, 429]
    retry_after = int(codes[-1].headers["retry-after"])
    assert 1 <= retry_after <= 3600
    # Another platform has its own budget.
    other = gw.register()
    body = standard_body(sample_order(code()))
    headers = standard_webhook_headers(other["webhook_secret"], body)
    assert (
        limited.post(
            f"/v1/webhooks/{other['platform_id']}", content=body, headers=headers
        ).status_code
        == 202
    )


# -- replay and access -------------------------------------------------------------------------


def test_admin_replays_a_rejected_delivery(gw) -> None:
    p = gw.register()
    c = code()
    body = standard_body(sample_order(c))
    wrong = standard_webhook_headers("whsec_" + "A" * 44, body)
    r = gw.client.post(f"/v1/webhooks/{p['platform_id']}", content=body, headers=wrong)
    assert r.status_code == 401
    (rejected,) = gw.inbound(p["platform_id"], status="rejected")
    url = f"/v1/platforms/{p['platform_id']}/inbound-deliveries/{rejected['id']}/replay"
    replayed = gw.client.post(url, headers=gw.admin)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] == "accepted"
    (msg,) = gw.outbox()
    assert msg["event"]["data"]["order_code"] == c
    # A second replay is the same platform event: no second effect.
    again = gw.client.post(url, headers=gw.admin)
    assert again.json()["status"] == "duplicate"
    assert len(gw.outbox()) == 1
    log = gw.inbound(p["platform_id"])
    assert [d["replay_of"] for d in log[:2]] == [rejected["id"], rejected["id"]]


def test_platform_token_sees_its_own_log_and_nothing_else(gw, settings) -> None:
    p = gw.register()
    other = gw.register()
    token = gw.client.post(
        "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": p["client_id"],
            "client_secret": p["client_secret"],
        },
    )
    assert token.status_code == 200
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert (
        gw.client.get(
            f"/v1/platforms/{p['platform_id']}/inbound-deliveries", headers=auth
        ).status_code
        == 200
    )
    for path in ("inbound-deliveries", "deliveries", ""):
        r = gw.client.get(f"/v1/platforms/{other['platform_id']}/{path}".rstrip("/"), headers=auth)
        assert r.status_code == 404, path
    # A platform upserts its own orders, never another's; replays are for operators.
    assert (
        gw.client.put(
            f"/v1/platforms/{other['platform_id']}/orders/X1", json=sample_order("X1"), headers=auth
        ).status_code
        == 404
    )
    ok = gw.client.put(
        f"/v1/platforms/{p['platform_id']}/orders/X1", json=sample_order("X1"), headers=auth
    )
    assert ok.status_code == 200
    assert (
        gw.client.post(
            f"/v1/platforms/{p['platform_id']}/inbound-deliveries/1/replay", headers=auth
        ).status_code
        == 403
    )


def test_put_order_is_idempotent_by_content_and_checks_the_path(gw) -> None:
    p = gw.register("shopee")
    order = sample_order("X2")
    assert gw.put_order(p["platform_id"], order).json()["status"] == "accepted"
    assert gw.put_order(p["platform_id"], order).json()["status"] == "duplicate"
    r = gw.client.put(
        f"/v1/platforms/{p['platform_id']}/orders/OTHER", json=order, headers=gw.admin
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "order_code"
    assert len(gw.outbox()) == 1


def test_settings_fixture_is_isolated(settings: GatewaySettings) -> None:
    assert settings.public_base_url == "http://gateway.test"


def test_metrics_count_deliveries_by_kind_and_outcome(gw) -> None:
    p = gw.register()
    post_standard(gw, p, standard_body(sample_order(code())))
    post_standard(gw, p, b"{oops")
    text_ = gw.client.get("/metrics").text
    assert 'odr_gateway_inbound_deliveries_total{kind="standard",status="accepted"}' in text_
    assert 'odr_gateway_inbound_deliveries_total{kind="standard",status="rejected"}' in text_


def test_concurrent_copies_of_one_delivery_have_one_effect(gw, client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    p = gw.register()
    body = standard_body(sample_order(code()))
    headers = standard_webhook_headers(p["webhook_secret"], body)
    # Two ids for one event as well: the platform retried under a new webhook-id at once.
    other = standard_webhook_headers(p["webhook_secret"], body)
    ingestor = client.app.state.ingestor
    calls = [headers] * 4 + [other] * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        receipts = list(
            pool.map(lambda h: ingestor.receive(p["platform_id"], dict(h), body), calls)
        )
    assert len(gw.outbox()) == 1
    assert len({r.delivery_id for r in receipts[:4]}) == 1
    assert sum(r.status == "accepted" and not r.duplicate for r in receipts) == 1
