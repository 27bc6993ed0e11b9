"""The batch endpoint: up to 1000 standard events under one signature, in one transaction."""

from __future__ import annotations

import json

from odr_shared.testing import sample_order, standard_webhook_headers


def batch(codes: list[str], **overrides) -> bytes:
    events = [
        {
            "type": "order.created",
            "timestamp": "2026-11-20T03:00:00Z",
            "data": sample_order(c, **overrides),
        }
        for c in codes
    ]
    return json.dumps({"events": events}, ensure_ascii=False).encode()


def post(gw, p, body: bytes, secret: str | None = None):
    headers = standard_webhook_headers(secret or p["webhook_secret"], body)
    return gw.client.post(f"/v1/webhooks/{p['platform_id']}/batch", content=body, headers=headers)


def test_a_thousand_events_in_one_signed_batch(gw) -> None:
    p = gw.register()
    codes = [f"B{i:04d}" for i in range(1000)]
    r = post(gw, p, batch(codes))
    assert r.status_code == 202, r.text
    assert r.json()["summary"] == {"accepted": 1000}
    assert r.json()["event_count"] == 1000
    outbox = gw.outbox()
    assert [m["key"] for m in outbox] == [f"{p['platform_id']}:{c}" for c in codes]
    # One inbound row for the whole delivery.
    (row,) = gw.inbound(p["platform_id"])
    assert row["source"] == "batch"
    assert row["summary"] == {"accepted": 1000}


def test_a_batch_resent_or_overlapping_has_one_effect_per_event(gw) -> None:
    p = gw.register()
    body = batch(["A1", "A2"])
    headers = standard_webhook_headers(p["webhook_secret"], body)
    url = f"/v1/webhooks/{p['platform_id']}/batch"
    gw.client.post(url, content=body, headers=headers)
    same = gw.client.post(url, content=body, headers=headers)
    assert same.json()["duplicate"] is True
    overlap = post(gw, p, batch(["A2", "A3", "A3"]))
    assert overlap.json()["summary"] == {"duplicate": 2, "accepted": 1}
    assert len(gw.outbox()) == 3


def test_batch_limits_and_errors(gw) -> None:
    p = gw.register()
    too_many = post(gw, p, batch([f"C{i}" for i in range(1001)]))
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "events"
    events = json.loads(batch(["D0", "D1", "D2", "D3"]))
    events["events"][3]["data"]["status"] = "lost"
    bad = post(gw, p, json.dumps(events).encode())
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "events.3.data.status"
    empty = post(gw, p, b'{"events": []}')
    assert empty.status_code == 422
    wrong_sig = post(gw, p, batch(["E1"]), secret="whsec_" + "B" * 44)
    assert wrong_sig.status_code == 401
    assert gw.outbox() == []
    assert len(gw.inbound(p["platform_id"], status="rejected")) == 4


def test_batch_is_for_the_standard_kind(gw) -> None:
    p = gw.register("shopee")
    body = batch(["F1"])
    headers = standard_webhook_headers("whsec_" + "C" * 44, body)
    r = gw.client.post(f"/v1/webhooks/{p['platform_id']}/batch", content=body, headers=headers)
    assert r.status_code == 400
