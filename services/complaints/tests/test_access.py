"""Object-level access: every party sees only what its token covers; everything else is 404."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from complaints.access import can_see_case, can_see_order
from complaints.service import Deps
from odr_shared.auth import Party
from odr_shared.events import Actor, MediationEventV1, build_event

CASE = {
    "category": "not_received",
    "description": "Chưa nhận được hàng sau 2 tuần.",
    "desired_outcome": "refund",
}


@pytest.mark.parametrize(
    ("party", "visible"),
    [
        (Party("consumer", "c", platform_id="a", order_id="a:DH1"), True),
        (Party("consumer", "c", platform_id="a", order_id="a:DH2"), False),
        (Party("consumer", "c", platform_id="b", order_id="b:DH1"), False),
        (Party("platform", "p", platform_id="a"), True),
        (Party("platform", "p", platform_id="b"), False),
        (Party("mediator", "m", neutral_id="n1"), True),
        (Party("mediator", "m", neutral_id="n2"), False),
        (Party("arbitrator", "m", neutral_id="n2"), False),
        (Party("admin", "x"), True),
    ],
)
def test_case_visibility_rules(party: Party, visible: bool) -> None:
    assert can_see_case(party, order_id="a:DH1", platform_id="a", neutral_ids={"n1"}) is visible


def test_neutrals_never_see_orders() -> None:
    assert not can_see_order(Party("mediator", "m", neutral_id="n1"), "a:DH1", "a")


def _assign(deps: Deps, case_id: str, neutral_id: str, role: str = "mediator") -> None:
    from complaints.consumer import apply_mediation_event

    data = MediationEventV1(
        case_id=case_id,
        platform_id="plat-a",
        neutral_id=neutral_id,
        neutral_role=role,  # type: ignore[arg-type]
        actor=Actor(role="system"),
    )
    event = build_event(source="test", event_type="case.assigned", subject=case_id, data=data)
    with deps.sessions.begin() as session:
        apply_mediation_event(session, event, deps)


def test_access_matrix_over_http(
    client: TestClient,
    deps: Deps,
    seed_order: Callable[..., str],
    bearer: Callable[..., dict[str, str]],
) -> None:
    seed_order("DHA", platform_id="plat-a")
    seed_order("DHB", platform_id="plat-b")
    consumer_a = bearer("consumer", order_id="plat-a:DHA", platform_id="plat-a")
    consumer_b = bearer("consumer", order_id="plat-b:DHB", platform_id="plat-b")
    case_a = client.post(
        "/v1/cases", json={"order_code": "DHA", **CASE}, headers=consumer_a
    ).json()["case_id"]
    case_b = client.post(
        "/v1/cases", json={"order_code": "DHB", **CASE}, headers=consumer_b
    ).json()["case_id"]
    platform_a = bearer("platform", platform_id="plat-a")
    platform_b = bearer("platform", platform_id="plat-b")
    client.post(f"/v1/cases/{case_a}/escalate", headers=platform_a)
    _assign(deps, case_a, "n-assigned")
    mediator = bearer("mediator", neutral_id="n-assigned", roles=("mediator",))
    stranger = bearer("mediator", neutral_id="n-other", roles=("mediator",))
    admin = bearer("admin")

    def status(method: str, url: str, headers: dict[str, str], **kw: Any) -> int:
        return client.request(method, url, headers=headers, **kw).status_code

    # Consumer B, platform B and an unassigned neutral cannot see or touch case A at all.
    for outsider in (consumer_b, platform_b, stranger):
        assert status("GET", f"/v1/cases/{case_a}", outsider) == 404
        assert status("POST", f"/v1/cases/{case_a}/messages", outsider, json={"text": "hi"}) == 404
        assert status("POST", f"/v1/cases/{case_a}/withdraw", outsider) == 404
        assert status("POST", f"/v1/cases/{case_a}/escalate", outsider) == 404
        assert (
            status("POST", f"/v1/cases/{case_a}/offers", outsider, json={"kind": "replacement"})
            == 404
        )
        assert (
            status(
                "POST",
                f"/v1/cases/{case_a}/evidence",
                outsider,
                files={"file": ("a.pdf", b"%PDF-1", "application/pdf")},
            )
            == 404
        )
        assert status("GET", f"/v1/cases/{case_a}/evidence", outsider) == 404
        assert case_a not in [
            c["case_id"] for c in client.get("/v1/cases", headers=outsider).json()
        ]
    # Orders: a consumer sees only its own order; a platform only its own, even with ?platform_id.
    assert status("GET", "/v1/orders/DHA", consumer_b) == 404
    assert status("GET", "/v1/orders/DHA?platform_id=plat-a", consumer_b) == 404
    assert status("GET", "/v1/orders/DHA?platform_id=plat-a", platform_b) == 404
    assert status("GET", "/v1/orders/DHA", mediator) == 404
    assert status("GET", "/v1/orders/DHA?platform_id=plat-a", platform_a) == 200
    assert status("GET", "/v1/orders/DHA?platform_id=plat-a", admin) == 200
    # The parties, the assigned neutral and the admin see it.
    for insider in (consumer_a, platform_a, mediator, admin):
        assert status("GET", f"/v1/cases/{case_a}", insider) == 200
    assert (
        client.get(f"/v1/cases/{case_a}", headers=consumer_a).json()["neutral_id"] == "n-assigned"
    )
    assert (
        status("POST", f"/v1/cases/{case_a}/messages", mediator, json={"text": "Chào hai bên"})
        == 201
    )
    # Lists: platform own, admin all, neutral assigned.
    assert [c["case_id"] for c in client.get("/v1/cases", headers=platform_a).json()] == [case_a]
    assert [c["case_id"] for c in client.get("/v1/cases", headers=mediator).json()] == [case_a]
    assert {case_a, case_b} <= {c["case_id"] for c in client.get("/v1/cases", headers=admin).json()}
    # Reassignment removes the previous mediator's access.
    _assign(deps, case_a, "n-new")
    assert status("GET", f"/v1/cases/{case_a}", mediator) == 404
    # An expired or forged token is 401, not a peek.
    assert (
        client.get(f"/v1/cases/{case_a}", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    expired = deps.tokens.issue(role="admin", subject="x", ttl=timedelta(seconds=-10))
    assert (
        client.get(
            f"/v1/cases/{case_a}", headers={"Authorization": f"Bearer {expired}"}
        ).status_code
        == 401
    )
