"""Platform registry over HTTP: registration rules, OAuth, secret and client rotation."""

from __future__ import annotations

import json

from odr_shared.testing import sample_order, standard_webhook_headers


def order_body(code: str) -> bytes:
    return json.dumps(
        {"type": "order.updated", "timestamp": "2026-11-20T03:00:00Z", "data": sample_order(code)}
    ).encode()


def test_registration_needs_the_secrets_each_kind_signs_with(gw) -> None:
    cases = [
        ({"name": "S", "kind": "shopee"}, "signing_secret"),
        ({"name": "L", "kind": "lazada", "signing_secret": "lazada-secret-1"}, "app_key"),
        ({"name": "T", "kind": "tiktok", "signing_secret": "tiktok-secret-1"}, "app_key"),
        ({"name": "X", "kind": "ebay"}, "kind"),
    ]
    for body, field in cases:
        r = gw.client.post("/v1/platforms", json=body, headers=gw.admin)
        assert r.status_code == 422, body
        assert r.json()["errors"][0]["field"] == field
    assert (
        gw.client.post("/v1/platforms", json={"name": "x", "kind": "standard"}).status_code == 401
    )


def test_registration_returns_secrets_once_and_lists_without_them(gw) -> None:
    p = gw.register("shopee")
    assert p["webhook_secret"].startswith("whsec_")
    listed = gw.client.get("/v1/platforms", headers=gw.admin).json()
    assert [x["platform_id"] for x in listed] == [p["platform_id"]]
    text = json.dumps(listed)
    assert p["signing_secret"] not in text
    assert p["webhook_secret"] not in text
    assert listed[0]["webhook_url"].endswith(f"/v1/webhooks/{p['platform_id']}")


def test_oauth_client_credentials(gw) -> None:
    p = gw.register()
    form = {
        "grant_type": "client_credentials",
        "client_id": p["client_id"],
        "client_secret": p["client_secret"],
    }
    ok = gw.client.post("/v1/oauth/token", data=form)
    assert ok.status_code == 200
    assert ok.json()["token_type"] == "bearer"
    me = gw.client.get(
        f"/v1/platforms/{p['platform_id']}",
        headers={"Authorization": f"Bearer {ok.json()['access_token']}"},
    )
    assert me.status_code == 200
    bad = gw.client.post("/v1/oauth/token", data={**form, "client_secret": "nope"})
    assert bad.status_code == 401
    wrong_grant = gw.client.post("/v1/oauth/token", data={**form, "grant_type": "password"})
    assert wrong_grant.status_code == 400


def test_client_secret_rotation_new_client_then_revoke_old(gw) -> None:
    p = gw.register()
    pid = p["platform_id"]
    new = gw.client.post(f"/v1/platforms/{pid}/clients", headers=gw.admin)
    assert new.status_code == 201

    def token(client_id: str, secret: str) -> int:
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        return gw.client.post("/v1/oauth/token", data=form).status_code

    assert token(p["client_id"], p["client_secret"]) == 200
    assert token(new.json()["client_id"], new.json()["client_secret"]) == 200
    r = gw.client.delete(f"/v1/platforms/{pid}/clients/{p['client_id']}", headers=gw.admin)
    assert r.status_code == 204
    assert token(p["client_id"], p["client_secret"]) == 401
    assert token(new.json()["client_id"], new.json()["client_secret"]) == 200
    clients = gw.client.get(f"/v1/platforms/{pid}/clients", headers=gw.admin).json()
    assert [c["revoked_at"] is not None for c in clients] == [True, False]


def test_standard_secret_rotation_keeps_the_old_secret_valid_for_the_grace(gw) -> None:
    p = gw.register()
    pid = p["platform_id"]
    old = p["webhook_secret"]
    r = gw.client.post(f"/v1/platforms/{pid}/rotate-secret", json={}, headers=gw.admin)
    assert r.status_code == 200
    new = r.json()["webhook_secret"]
    assert new.startswith("whsec_")
    assert new != old
    url = f"/v1/webhooks/{pid}"
    for i, secret in enumerate((old, new)):
        body = order_body(f"ROT{i}")
        ok = gw.client.post(url, content=body, headers=standard_webhook_headers(secret, body))
        assert ok.status_code == 202, secret
    # With no grace the old secret stops verifying at once.
    gw.client.post(
        f"/v1/platforms/{pid}/rotate-secret", json={"grace_period_s": 0}, headers=gw.admin
    )
    body = order_body("ROT9")
    stale = gw.client.post(url, content=body, headers=standard_webhook_headers(new, body))
    assert stale.status_code == 401


def test_marketplace_signing_secret_rotation(gw) -> None:
    p = gw.register("haravan")
    pid = p["platform_id"]
    r = gw.client.post(
        f"/v1/platforms/{pid}/rotate-secret",
        json={"signing_secret": "haravan-new-secret-99"},
        headers=gw.admin,
    )
    assert r.status_code == 200
    assert r.json()["webhook_secret"] is None
    body = json.dumps({"id": 1, "updated_at": "2026-11-20T03:00:00Z"}).encode()
    url = f"/v1/webhooks/{pid}"
    for secret in (p["signing_secret"], "haravan-new-secret-99"):
        headers = {
            "X-Haravan-Hmacsha256": gw.b64_hmac(secret, body),
            "X-Haravan-Topic": "products/update",
        }
        assert gw.client.post(url, content=body, headers=headers).status_code == 200
    empty = gw.client.post(f"/v1/platforms/{pid}/rotate-secret", json={}, headers=gw.admin)
    assert empty.status_code == 422
