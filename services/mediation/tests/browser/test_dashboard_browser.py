"""The neutrals' dashboard in headless Chromium: login, queue, case detail, every action."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from mediation_testkit import PASSWORD, case_event, make_settings
from playwright.sync_api import Page, expect, sync_playwright

from mediation import SERVICE_ROOT, service
from odr_shared.auth import TokenService
from odr_shared.db import make_engine, make_session_factory, utcnow
from odr_shared.migrate import upgrade
from odr_shared.testing import free_port, wait_http

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


class FakeComplaints(BaseHTTPRequestHandler):
    """Complaints' case API as the contract describes it, for the dashboard to read."""

    cases: ClassVar[dict[str, dict[str, Any]]] = {}
    seen_tokens: ClassVar[list[str]] = []
    messages: ClassVar[list[dict[str, Any]]] = []

    def _json(self, status: int, doc: object) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen_tokens.append(self.headers.get("authorization", ""))
        case_id = self.path.rstrip("/").split("/")[-1]
        doc = self.cases.get(case_id)
        if doc is None:
            self._json(404, {"title": "Not Found"})
            return
        self._json(200, {**doc, "timeline": doc["timeline"] + list(self.messages)})

    def do_POST(self) -> None:
        self.seen_tokens.append(self.headers.get("authorization", ""))
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length))
        message_id = f"msg_{len(self.messages) + 1}"
        self.messages.append(
            {
                "kind": "message",
                "id": message_id,
                "at": utcnow().isoformat(),
                "actor": {"role": "mediator"},
                "text": body["text"],
            }
        )
        self._json(201, {"message_id": message_id})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[dict[str, Any]]:
    db = f"sqlite:///{tmp_path}/mediation.db"
    upgrade(SERVICE_ROOT, db)
    settings = make_settings(db)
    engine = make_engine(db)
    sessions = make_session_factory(engine)
    emails = {"mediator": "hoa.giai@example.vn", "arbitrator": "trong.tai@example.vn"}
    with sessions() as session, session.begin():
        for role, email in emails.items():
            service.register_neutral(
                session,
                service.NeutralSpec(
                    name=f"{role} Nguyễn",
                    email=email,
                    phone="0901234567",
                    password=PASSWORD,
                    roles=[role],
                    categories=["not_delivered"],
                    languages=["vi", "en"],
                ),
            )
    data = case_event(claimed_amount=1_500_000)
    # Nobody speaks Khmer here: this one waits in the operator's queue.
    waiting = case_event(language="km")
    with sessions() as session, session.begin():
        service.take_escalated_case(session, data, utcnow(), settings)
        service.take_escalated_case(session, waiting, utcnow(), settings)
    engine.dispose()

    FakeComplaints.cases = {
        data.case_id: {
            "case_id": data.case_id,
            "reference": data.reference,
            "status": "in_mediation",
            "order_code": "DH001",
            # The shape complaints answers: status moves and entries (messages...) in one list.
            "timeline": [
                {
                    "kind": "status",
                    "at": "2026-11-10T03:00:00+00:00",
                    "actor": {"role": "consumer"},
                    "from_status": None,
                    "to_status": "awaiting_merchant",
                    "reason": "Chưa nhận được hàng",
                },
                {
                    "kind": "message",
                    "id": "m0",
                    "at": "2026-11-11T03:00:00+00:00",
                    "actor": {"role": "platform"},
                    "text": "Shop đã gửi hàng ngày 9/11",
                },
            ],
            "evidence": [
                {"evidence_id": "ev1", "filename": "bien-nhan.jpg", "content_type": "image/jpeg"}
            ],
            "offers": [
                {
                    "offer_id": "of1",
                    "kind": "partial_refund",
                    "amount": 200_000,
                    "terms": "hoàn 200.000",
                    "status": "rejected",
                }
            ],
        }
    }
    FakeComplaints.seen_tokens = []
    FakeComplaints.messages = []
    fake = ThreadingHTTPServer(("127.0.0.1", 0), FakeComplaints)
    threading.Thread(target=fake.serve_forever, daemon=True).start()

    port = free_port()
    env = {
        **os.environ,
        "MEDIATION_DATABASE_URL": db,
        "MEDIATION_COMPLAINTS_URL": f"http://127.0.0.1:{fake.server_address[1]}",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "ENVIRONMENT": "test",
        "LOG_FORMAT": "text",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", "from mediation.main import api; api()", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        yield {
            "base": base,
            "case": data,
            "waiting": waiting,
            "emails": emails,
            "settings": settings,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        fake.shutdown()


def _login(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/dashboard")
    expect(page).to_have_url(f"{base}/dashboard/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-button")


def test_mediator_and_arbitrator_work_a_case_in_the_browser(
    dashboard: dict[str, Any], artifacts_dir: Path
) -> None:
    base, case = dashboard["base"], dashboard["case"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            _login(page, base, dashboard["emails"]["mediator"])
            # My queue, Vietnamese by default, with an SLA colour.
            expect(page.locator("h1")).to_have_text("Hồ sơ của tôi")
            row = page.locator(f"tr[data-case-id='{case.case_id}']")
            expect(row).to_contain_text(case.reference)
            expect(row.locator(".sla")).to_have_class("sla sla-green")
            row.locator("a").click()

            # Case detail: order, masked parties, merged timeline, messages, evidence, offers.
            expect(page.locator("#order")).to_contain_text("DH001")
            parties = page.locator("#parties")
            expect(parties).not_to_contain_text("0912345678")
            expect(parties).not_to_contain_text("Nguyễn Văn An")
            expect(parties).to_contain_text("678")
            expect(page.locator("#timeline")).to_contain_text("→ awaiting_merchant")
            expect(page.locator("#messages")).to_contain_text("Shop đã gửi hàng")
            expect(page.locator("#timeline")).to_contain_text("case.assigned")
            expect(page.locator("#evidence")).to_contain_text("bien-nhan.jpg")
            expect(page.locator("#offers")).to_contain_text("hoàn 200.000")
            expect(page.locator("#complaints-unreachable")).to_have_count(0)

            page.fill("textarea[name=body]", "Xin chào, tôi là hòa giải viên của vụ việc.")
            page.click("text=Gửi tin nhắn >> nth=-1")
            expect(page.locator(".ok")).to_be_visible()
            expect(page.locator("#messages")).to_contain_text("tôi là hòa giải viên")

            page.select_option("#propose-form select[name=outcome]", "partial_refund")
            page.fill("#propose-form input[name=amount]", "750000")
            page.fill("#propose-form textarea[name=terms]", "Hoàn 750.000 đồng trong 5 ngày")
            page.click("#propose-form button")
            expect(page.locator("#proposals")).to_contain_text("750.000 ₫")

            page.fill("#escalate-form textarea[name=reason]", "Hai bên không đồng ý")
            page.click("#escalate-form button")
            expect(page.locator("#stage")).to_have_text("Đang trọng tài")
            page.click("header button")  # log out

            # The arbitrator, in English, decides.
            _login(page, base, dashboard["emails"]["arbitrator"])
            page.goto(f"{base}/dashboard?lang=en")
            expect(page.locator("h1")).to_have_text("My queue")
            page.locator(f"tr[data-case-id='{case.case_id}'] a").click()
            page.select_option("#decide-form select[name=outcome]", "full_refund")
            page.fill("#decide-form input[name=amount]", "1500000")
            page.fill(
                "#decide-form textarea[name=reasons]",
                "The television was never delivered; the seller showed no proof.",
            )
            page.click("#decide-form button")
            expect(page.locator("#stage")).to_have_text("Decided")
            expect(page.locator("#decision")).to_contain_text("1.500.000 ₫")
            page.screenshot(
                path=str(artifacts_dir / "mediation-dashboard-case.png"), full_page=True
            )
            page.click("header button")

            # The operator's view: waiting queue and each neutral's load.
            token = TokenService(dashboard["settings"]).issue(
                role="admin", subject="operator", ttl=timedelta(minutes=5)
            )
            page.goto(f"{base}/dashboard/login")
            page.fill("input[name=token]", token)
            page.locator("form[action='/dashboard/operator-login'] button").click()
            expect(page.locator("#waiting-queue")).to_contain_text(dashboard["waiting"].reference)
            expect(page.locator("#loads")).to_contain_text("mediator Nguyễn")
            expect(page.locator("#loads")).to_contain_text("0 / 10")
            page.screenshot(
                path=str(artifacts_dir / "mediation-dashboard-operator.png"), full_page=True
            )
        finally:
            browser.close()
    # The dashboard forwarded the neutral's own JWT to complaints.
    assert FakeComplaints.seen_tokens
    assert all(t.startswith("Bearer ey") for t in FakeComplaints.seen_tokens)


def test_wrong_password_is_refused_in_the_browser(dashboard: dict[str, Any]) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{dashboard['base']}/dashboard/login")
            page.fill("input[name=email]", dashboard["emails"]["mediator"])
            page.fill("input[name=password]", "not the password")
            page.click("#login-button")
            expect(page.locator(".error")).to_have_text("Sai thư điện tử hoặc mật khẩu.")
        finally:
            browser.close()
