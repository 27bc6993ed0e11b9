"""The buyer's journey through the portal in headless Chromium, on a phone-sized screen."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from complaints.app import create_app
from complaints.settings import ComplaintsSettings
from odr_shared.testing import free_port, wait_http

pytestmark = pytest.mark.browser

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 128
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # The journey is about the browser; the database matrix is covered by the API tests.
    return f"sqlite:///{tmp_path}/portal.db"


@pytest.fixture
def portal_url(settings: ComplaintsSettings) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz")
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def sign_in(
    page: Any, base: str, order_code: str, outbox: Callable[..., list[dict[str, Any]]]
) -> None:
    page.goto(base + "/")
    assert page.locator("h1").inner_text() == "Tra cứu đơn hàng"
    page.fill("input[name=order_code]", order_code)
    page.fill("input[name=phone]", "+84 912 345 678")
    page.click("button[type=submit]")
    page.wait_for_selector("input[name=code]")
    code = outbox("notification.send")[-1]["data"]["params"]["code"]
    page.fill("input[name=code]", code)
    page.click("form[action='/portal/verify'] button")
    page.wait_for_url("**/order")


def test_buyer_journey_in_the_browser(
    browser: Any,
    portal_url: str,
    seed_order: Callable[..., str],
    outbox: Callable[..., list[dict[str, Any]]],
    bearer: Callable[..., dict[str, str]],
    artifacts_dir: Path,
    tmp_path: Path,
) -> None:
    seed_order("DHWEB1")
    seed_order("DHWEB2")
    platform = bearer("platform", platform_id="plat-a")
    photo = tmp_path / "hang-vo.png"
    photo.write_bytes(PNG)
    receipt = tmp_path / "hoa-don.pdf"
    receipt.write_bytes(b"%PDF-1.4\n% receipt\n")

    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="vi-VN")
    page = context.new_page()
    sign_in(page, portal_url, "DHWEB1", outbox)
    assert "DHWEB1" in page.inner_text("main")
    assert "delivered" in page.inner_text(".history")

    # File a complaint with a photo.
    page.select_option("select[name=category]", "damaged")
    page.fill("textarea[name=description]", "Hộp bị móp, sản phẩm bên trong bị vỡ.")
    page.select_option("select[name=desired_outcome]", "refund")
    page.fill("input[name=claimed_amount]", "300000")
    page.set_input_files("#case-form input[type=file]", str(photo))
    page.click("#case-form button[type=submit]")
    page.wait_for_url("**/cases/*")
    reference = page.inner_text("#case-reference")
    assert reference.startswith("KN-")
    assert page.get_attribute("#case-status", "data-status") == "awaiting_merchant"
    assert "hang-vo.png" in page.inner_text("#timeline")
    case_id = page.url.rsplit("/", 1)[1]

    # A message and one more piece of evidence.
    page.fill("#message-form textarea", "Tôi cần hoàn tiền sớm.")
    page.click("#message-form button")
    page.wait_for_selector("text=Tôi cần hoàn tiền sớm.")
    page.set_input_files("#evidence-form input[type=file]", str(receipt))
    page.click("#evidence-form button")
    page.wait_for_selector("#timeline >> text=hoa-don.pdf")

    # The platform offers a partial refund; the buyer rejects it and escalates.
    r = httpx.post(
        f"{portal_url}/v1/cases/{case_id}/offers",
        json={"kind": "partial_refund", "amount": 80000, "terms": "Hoàn 80.000 đ"},
        headers=platform,
    )
    assert r.status_code == 201, r.text
    page.reload()
    assert "80.000 ₫" in page.inner_text("#offers")
    page.click("button.reject-offer")
    page.wait_for_selector("#escalate")
    page.fill("#escalate-form input[name=reason]", "Đề nghị quá thấp")
    page.check("#escalate-consent")  # the file, evidence included, goes to a neutral
    page.click("#escalate")
    page.wait_for_selector("#case-status[data-status=escalated]")
    assert "Đã chuyển hòa giải" in page.inner_text("#case-status")

    # Switch to English.
    page.click("#lang-switch")
    page.wait_for_selector("text=Timeline")
    assert page.inner_text("#case-status") == "Escalated"
    page.screenshot(path=str(artifacts_dir / "complaints-portal-case.png"), full_page=True)
    context.close()

    # A second buyer accepts an offer: the case is resolved.
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    sign_in(page, portal_url, "DHWEB2", outbox)
    page.fill("textarea[name=description]", "Giao sai màu áo so với đơn đặt.")
    page.select_option("select[name=category]", "wrong_item")
    page.select_option("select[name=desired_outcome]", "replacement")
    page.click("#case-form button[type=submit]")
    page.wait_for_url("**/cases/*")
    second = page.url.rsplit("/", 1)[1]
    httpx.post(
        f"{portal_url}/v1/cases/{second}/offers", json={"kind": "replacement"}, headers=platform
    )
    page.reload()
    page.click("button.accept-offer")
    page.wait_for_selector("#case-status[data-status=resolved]")
    # The first buyer's case is out of reach from this session.
    page.goto(f"{portal_url}/cases/{case_id}")
    assert reference not in page.content()
    context.close()
