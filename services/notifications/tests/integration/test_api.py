"""GET /v1/deliveries (filters; contacts in clear for admins only) and POST /v1/preferences."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from notifications_testkit import (
    CONSUMER_EN,
    CONSUMER_VI,
    Harness,
    SmsProvider,
    case_event,
    order_event,
    otp_command,
    token,
)

from notifications.app import create_app
from odr_shared.events import CASES_TOPIC, NOTIFICATIONS_TOPIC, ORDERS_TOPIC

pytestmark = pytest.mark.kafka


@pytest.fixture
def client(harness: Harness) -> Iterator[TestClient]:
    with TestClient(create_app(harness.settings)) as c:
        yield c


@pytest.fixture
def recorded(harness: Harness) -> dict[str, str]:
    case_a = case_event("case.opened", consumer=CONSUMER_VI, platform_id="plat-a")
    case_b = case_event("case.opened", consumer=CONSUMER_EN, platform_id="plat-b")
    harness.deliver(case_a, CASES_TOPIC)
    harness.deliver(case_b, CASES_TOPIC)
    harness.deliver(otp_command("0912345678", code="135790"), NOTIFICATIONS_TOPIC)
    harness.drain()
    return {
        "case_a": case_a.data.case_id,
        "case_b": case_b.data.case_id,
        "order_a": case_a.data.order_id,
    }


def test_admin_lists_every_delivery_with_contacts_in_clear(
    client: TestClient, recorded: dict[str, str]
) -> None:
    r = client.get("/v1/deliveries", headers=token("admin"))
    assert r.status_code == 200, r.text
    rows = r.json()
    assert len(rows) == 4
    assert set(rows[0]) >= {
        "id", "channel", "recipient", "template", "language", "body", "status", "attempts",
        "event_id", "created_at", "sent_at",
    }  # fmt: skip
    assert {row["recipient"] for row in rows} == {
        "+84912345678",
        "an.nguyen@example.vn",
        "+84987654321",
    }
    assert {row["status"] for row in rows} == {"sent"}
    otp = next(row for row in rows if row["template"] == "otp")
    assert "135790" not in otp["body"]  # never shown, not even to an admin
    en = next(row for row in rows if row["recipient"] == "+84987654321")
    assert en["language"] == "en"
    assert en["body"].startswith("ODR: complaint")
    reference = en["body"].split()[2]
    assert reference.startswith("KN-2026-")
    assert len(reference) == len("KN-2026-000123")  # stored bodies keep references intact


def test_filters_by_recipient_in_any_spelling_case_and_channel(
    client: TestClient, recorded: dict[str, str]
) -> None:
    admin = token("admin")
    by_phone = client.get("/v1/deliveries", params={"recipient": "0912 345 678"}, headers=admin)
    assert sorted(row["template"] for row in by_phone.json()) == ["case_opened", "otp"]
    by_email = client.get(
        "/v1/deliveries", params={"recipient": "An.Nguyen@Example.VN"}, headers=admin
    )
    assert [row["channel"] for row in by_email.json()] == ["email"]
    by_case = client.get("/v1/deliveries", params={"case_id": recorded["case_a"]}, headers=admin)
    assert sorted(row["channel"] for row in by_case.json()) == ["email", "sms"]
    emails = client.get(
        "/v1/deliveries", params={"case_id": recorded["case_a"], "channel": "email"}, headers=admin
    )
    assert len(emails.json()) == 1
    nobody = client.get("/v1/deliveries", params={"recipient": "0900000000"}, headers=admin)
    assert nobody.json() == []


def test_platform_sees_only_its_own_deliveries_and_contacts_masked(
    client: TestClient, recorded: dict[str, str]
) -> None:
    r = client.get("/v1/deliveries", headers=token("platform", platform_id="plat-a"))
    assert r.status_code == 200
    rows = r.json()
    assert {row["case_id"] for row in rows} == {recorded["case_a"]}
    assert sorted(row["recipient"] for row in rows) == ["849****678", "a***@example.vn"]
    assert "0912345678" not in r.text
    assert "an.nguyen@example.vn" not in r.text


def test_consumer_sees_only_their_order_masked(
    client: TestClient, recorded: dict[str, str]
) -> None:
    headers = token("consumer", order_id=recorded["order_a"], platform_id="plat-a")
    rows = client.get("/v1/deliveries", headers=headers).json()
    assert {row["case_id"] for row in rows} == {recorded["case_a"]}
    assert all("*" in row["recipient"] for row in rows)


def test_neutrals_and_anonymous_callers_are_refused(client: TestClient) -> None:
    assert client.get("/v1/deliveries").status_code == 401
    neutral = token("mediator", neutral_id="n-1")
    r = client.get("/v1/deliveries", headers=neutral)
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")


def test_bad_filter_is_a_problem_naming_the_field(client: TestClient) -> None:
    r = client.get("/v1/deliveries", params={"channel": "fax"}, headers=token("admin"))
    assert r.status_code == 422
    assert any(e["field"].endswith("channel") for e in r.json()["errors"])


def test_opt_out_through_the_api_suppresses_order_status_only(
    client: TestClient, harness: Harness
) -> None:
    admin = token("admin")
    r = client.post(
        "/v1/preferences", json={"contact": "0955 111 222", "order_status": False}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["order_status"] is False
    assert r.json()["case_updates"] is True
    assert r.json()["contact"] == "849****222"
    got = client.get("/v1/preferences", params={"contact": "+84955111222"}, headers=admin)
    assert got.json()["order_status"] is False

    harness.deliver(order_event("0955111222", status_notifications=True), ORDERS_TOPIC)
    consumer = CONSUMER_VI.model_copy(update={"phone": "0955111222", "email": None})
    harness.deliver(case_event("case.deadline_missed", consumer=consumer), CASES_TOPIC)
    harness.drain()
    rows = client.get("/v1/deliveries", params={"recipient": "0955111222"}, headers=admin).json()
    assert {(row["template"], row["status"]) for row in rows} == {
        ("order_status", "suppressed"),
        ("deadline_missed", "sent"),
    }
    # Turning it back on lets the next order message through.
    client.post(
        "/v1/preferences", json={"contact": "0955111222", "order_status": True}, headers=admin
    )
    harness.deliver(order_event("0955111222", status_notifications=True), ORDERS_TOPIC)
    harness.drain()
    rows = client.get(
        "/v1/deliveries", params={"recipient": "0955111222", "status": "sent"}, headers=admin
    ).json()
    assert sorted(row["template"] for row in rows) == ["deadline_missed", "order_status"]


def test_preferences_are_admin_only_and_validate_the_contact(client: TestClient) -> None:
    body = {"contact": "0955111222", "order_status": False}
    assert client.post("/v1/preferences", json=body).status_code == 401
    platform = token("platform", platform_id="plat-a")
    assert client.post("/v1/preferences", json=body, headers=platform).status_code == 403
    bad = client.post(
        "/v1/preferences", json={"contact": "12ab", "order_status": False}, headers=token("admin")
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "contact"


def test_signed_link_in_order_status_sms_opts_out_and_back_in(
    client: TestClient, harness: Harness, sms_provider: SmsProvider
) -> None:
    harness.deliver(order_event("0966222333", status_notifications=True), ORDERS_TOPIC)
    harness.drain()
    [text] = sms_provider.texts_to("+84966222333")
    link = text.rsplit(" ", 1)[-1]
    assert "/u/" in link
    path = link[link.index("/u/") :]
    # The stored copy does not carry the link (it is a capability), the sent text does.
    [row] = client.get(
        "/v1/deliveries", params={"recipient": "0966222333"}, headers=token("admin")
    ).json()
    assert path not in row["body"]

    page = client.get(path)
    assert page.status_code == 200
    assert "Ngừng nhận tin" in page.text
    assert '<form method="post"' in page.text
    pref = client.get("/v1/preferences", params={"contact": "0966222333"}, headers=token("admin"))
    assert pref.json()["order_status"] is True

    done = client.post(path)
    assert done.status_code == 200
    assert "Đã ngừng nhận tin" in done.text
    harness.deliver(order_event("0966222333", status_notifications=True), ORDERS_TOPIC)
    consumer = CONSUMER_VI.model_copy(update={"phone": "0966222333", "email": None})
    harness.deliver(case_event("case.deadline_missed", consumer=consumer), CASES_TOPIC)
    harness.drain()
    texts = sms_provider.texts_to("+84966222333")
    assert len(texts) == 2  # the first order message and the deadline, not the second order
    assert "dung han" in texts[1] or "đúng hạn" in texts[1]

    resumed = client.post(path, data={"resume": "1"})
    assert resumed.status_code == 200
    harness.deliver(order_event("0966222333", status_notifications=True), ORDERS_TOPIC)
    harness.drain()
    assert len(sms_provider.texts_to("+84966222333")) == 3
    # The same recipient keeps one link.
    assert sms_provider.texts_to("+84966222333")[2].endswith(path)


def test_unknown_unsubscribe_link_changes_nothing(client: TestClient) -> None:
    assert client.get("/u/NoSuchToken1").status_code == 404
    assert client.post("/u/NoSuchToken1").status_code == 404
    assert client.get("/u/bad%20token").status_code == 422
