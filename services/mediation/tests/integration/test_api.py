"""Mediation's HTTP API on SQLite and PostgreSQL: neutrals, login, queue, proposals, arbitration."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from mediation_testkit import (
    PASSWORD,
    admin_headers,
    case_event,
    escalate,
    login,
    neutral_body,
    outbox,
)
from sqlalchemy import select

from mediation import service
from mediation.models import Neutral
from odr_shared.auth import TokenService
from odr_shared.db import utcnow
from odr_shared.events import build_event


def test_register_neutral_needs_admin_and_valid_fields(client: TestClient, settings) -> None:
    body = neutral_body()
    assert client.post("/v1/neutrals", json=body).status_code == 401
    bad = client.post(
        "/v1/neutrals",
        json={**body, "password": "short", "languages": ["v!"]},
        headers=admin_headers(settings),
    )
    assert bad.status_code == 422
    fields = {e["field"] for e in bad.json()["errors"]}
    assert {"password", "languages"} <= fields
    ok = client.post("/v1/neutrals", json=body, headers=admin_headers(settings))
    assert ok.status_code == 201
    assert ok.json()["neutral_id"].startswith("ntr_")
    dup = client.post("/v1/neutrals", json=body, headers=admin_headers(settings))
    assert dup.status_code == 409


def test_password_is_stored_as_argon2_and_login_issues_a_neutral_token(
    client: TestClient, settings, sessions, add_neutral
) -> None:
    body = neutral_body(roles=["arbitrator", "mediator"])
    r = client.post("/v1/neutrals", json=body, headers=admin_headers(settings))
    nid = r.json()["neutral_id"]
    with sessions() as session:
        stored = session.get(Neutral, nid).password_hash
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    r = client.post("/v1/auth/login", json={"email": body["email"].upper(), "password": PASSWORD})
    assert r.status_code == 200
    party = TokenService(settings).verify(r.json()["access_token"])
    assert party.role == "mediator"
    assert party.neutral_id == nid
    assert set(party.roles) == {"mediator", "arbitrator"}
    wrong = client.post("/v1/auth/login", json={"email": body["email"], "password": "nope-nope"})
    assert wrong.status_code == 401
    unknown = client.post("/v1/auth/login", json={"email": "x@y.vn", "password": PASSWORD})
    assert unknown.status_code == 401


def test_login_is_rate_limited_with_retry_after(client: TestClient, settings) -> None:
    body = neutral_body()
    client.post("/v1/neutrals", json=body, headers=admin_headers(settings))
    for _ in range(settings.login_max_attempts):
        assert (
            client.post(
                "/v1/auth/login", json={"email": body["email"], "password": "wrong-one"}
            ).status_code
            == 401
        )
    r = client.post("/v1/auth/login", json={"email": body["email"], "password": PASSWORD})
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1


def test_escalated_case_is_assigned_and_shows_in_the_mediators_queue_only(
    client: TestClient, settings, sessions, add_neutral: Callable[..., str]
) -> None:
    mine = neutral_body()
    client.post("/v1/neutrals", json=mine, headers=admin_headers(settings))
    other = neutral_body()
    client.post(
        "/v1/neutrals",
        json={**other, "categories": ["counterfeit"]},
        headers=admin_headers(settings),
    )
    case_id = escalate(sessions, settings)
    me, them = login(client, mine["email"]), login(client, other["email"])
    queue = client.get("/v1/assignments", headers=me).json()
    assert [a["case_id"] for a in queue] == [case_id]
    assert queue[0]["role"] == "mediator"
    assert client.get("/v1/assignments", headers=them).json() == []
    assert client.get(f"/v1/cases/{case_id}", headers=me).json()["stage"] == "mediation"
    # Someone else's case: indistinguishable from a case that does not exist.
    assert client.get(f"/v1/cases/{case_id}", headers=them).status_code == 404
    assert client.get("/v1/cases/nope", headers=me).status_code == 404
    assert (
        client.post(
            f"/v1/cases/{case_id}/proposals",
            headers=them,
            json={"outcome": "replacement", "terms": "x"},
        ).status_code
        == 404
    )
    events = outbox(sessions)
    assert events[0][0] == "case.assigned"
    assert events[0][1]["neutral_role"] == "mediator"
    assert events[0][1]["neutral_contact"]["email"] == mine["email"]
    routing = client.get(f"/v1/cases/{case_id}/routing", headers=admin_headers(settings)).json()
    assert routing[0]["outcome"] == "assigned"
    assert routing[0]["excluded_by"]["category"] == 1


def test_propose_escalate_and_a_sole_arbitrators_decision(
    client: TestClient, settings, sessions
) -> None:
    med = neutral_body()
    arb = neutral_body(roles=["arbitrator"])
    for b in (med, arb):
        client.post("/v1/neutrals", json=b, headers=admin_headers(settings))
    case_id = escalate(sessions, settings, claimed_amount=2_000_000)
    m, a = login(client, med["email"]), login(client, arb["email"])

    bad = client.post(
        f"/v1/cases/{case_id}/proposals",
        headers=m,
        json={"outcome": "partial_refund", "terms": "half back"},
    )
    assert bad.status_code == 422
    p = client.post(
        f"/v1/cases/{case_id}/proposals",
        headers=m,
        json={"outcome": "partial_refund", "amount": 1_000_000, "terms": "half back"},
    )
    assert p.status_code == 201, p.text
    # The arbitrator is not on the case yet.
    assert (
        client.post(
            f"/v1/cases/{case_id}/decision",
            headers=a,
            json={
                "outcome": "full_refund",
                "amount": 2_000_000,
                "reasons": "goods never delivered",
            },
        ).status_code
        == 404
    )

    e = client.post(f"/v1/cases/{case_id}/escalate", headers=m, json={"reason": "no agreement"})
    assert e.status_code == 200, e.text
    assert e.json()["stage"] == "arbitration"
    assert client.get("/v1/assignments", headers=m).json() == []
    # The mediator cannot decide.
    assert client.post(
        f"/v1/cases/{case_id}/decision",
        headers=m,
        json={"outcome": "full_refund", "amount": 1, "reasons": "I would like to decide"},
    ).status_code in (403, 409)
    d = client.post(
        f"/v1/cases/{case_id}/decision",
        headers=a,
        json={
            "outcome": "full_refund",
            "amount": 2_000_000,
            "reasons": "The goods were never delivered; refund in full.",
        },
    )
    assert d.status_code == 201, d.text
    assert len(d.json()["decided_by"]) == 1
    view = client.get(f"/v1/cases/{case_id}", headers=a).json()
    assert view["stage"] == "decided"
    assert view["decision"]["amount"] == 2_000_000
    types = [t for t, _ in outbox(sessions)]
    assert types == [
        "case.assigned",
        "mediation.proposal_made",
        "case.referred_to_arbitration",
        "case.assigned",
        "arbitration.decided",
    ]
    decided = outbox(sessions)[-1][1]
    assert decided["decision"]["outcome"] == "full_refund"
    assert decided["decision"]["reasons"].startswith("The goods")
    with sessions() as session:
        loads = {n.email: n.active_cases for n in session.execute(select(Neutral)).scalars()}
    assert loads == {med["email"]: 0, arb["email"]: 0}


def test_large_claims_go_to_a_panel_of_three_that_excludes_the_mediator(
    client: TestClient, settings, sessions
) -> None:
    both = neutral_body(roles=["mediator", "arbitrator"])
    arbs = [neutral_body(roles=["arbitrator"]) for _ in range(3)]
    for b in (both, *arbs):
        client.post("/v1/neutrals", json=b, headers=admin_headers(settings))
    case_id = escalate(sessions, settings, claimed_amount=150_000_000)
    m = login(client, both["email"])
    assert client.get("/v1/assignments", headers=m).json()[0]["role"] == "mediator"
    client.post(f"/v1/cases/{case_id}/escalate", headers=m, json={"reason": "deadlock"})
    view = client.get(f"/v1/cases/{case_id}", headers=admin_headers(settings)).json()
    panel = [x for x in view["assignments"] if x["role"] == "arbitrator"]
    assert len(panel) == 3
    with sessions() as session:
        mediator_id = session.execute(
            select(Neutral.neutral_id).where(Neutral.email == both["email"])
        ).scalar_one()
    assert mediator_id not in {x["neutral_id"] for x in panel}

    heads = [login(client, b["email"]) for b in arbs]
    first = client.post(
        f"/v1/cases/{case_id}/decision",
        headers=heads[0],
        json={
            "outcome": "partial_refund",
            "amount": 50_000_000,
            "reasons": "Part of the goods arrived damaged.",
        },
    )
    assert first.status_code == 202
    assert first.json()["votes"] == 1
    second = client.post(
        f"/v1/cases/{case_id}/decision",
        headers=heads[1],
        json={
            "outcome": "full_refund",
            "amount": 150_000_000,
            "reasons": "Nothing usable was delivered.",
        },
    )
    assert second.status_code == 202
    third = client.post(
        f"/v1/cases/{case_id}/decision",
        headers=heads[2],
        json={
            "outcome": "full_refund",
            "amount": 150_000_000,
            "reasons": "Agree: nothing usable was delivered.",
        },
    )
    assert third.status_code == 201, third.text
    assert third.json()["outcome"] == "full_refund"
    assert len(third.json()["decided_by"]) == 2
    decided = [d for t, d in outbox(sessions) if t == "arbitration.decided"]
    assert len(decided) == 1
    assert len(decided[0]["neutral_ids"]) == 3


def test_a_message_goes_through_the_outbox_when_complaints_is_down(
    client: TestClient, settings, sessions
) -> None:
    body = neutral_body()
    client.post("/v1/neutrals", json=body, headers=admin_headers(settings))
    case_id = escalate(sessions, settings)
    me = login(client, body["email"])
    r = client.post(f"/v1/cases/{case_id}/messages", headers=me, json={"body": "Chào anh An"})
    assert r.status_code == 201
    assert r.json() == {"message_id": None, "delivery": "queued"}
    posted = [d for t, d in outbox(sessions) if t == "mediation.message_posted"]
    assert posted[0]["details"] == {"text": "Chào anh An", "author_role": "mediator"}
    # Writing to the parties counts as acting: the SLA no longer replaces this mediator.
    with sessions() as session, session.begin():
        assert service.sweep_sla(session, settings, utcnow() + timedelta(days=30)) == 0


def test_proposal_answers_from_complaints_are_recorded(
    client: TestClient, settings, sessions
) -> None:
    body = neutral_body()
    client.post("/v1/neutrals", json=body, headers=admin_headers(settings))
    case_id = escalate(sessions, settings)
    me = login(client, body["email"])
    pid = client.post(
        f"/v1/cases/{case_id}/proposals",
        headers=me,
        json={"outcome": "replacement", "terms": "đổi máy mới"},
    ).json()["proposal_id"]
    from mediation.consumer import handlers

    table = handlers(settings)
    for party in ("consumer", "platform"):
        data = case_event(
            case_id=case_id, status="in_mediation", details={"proposal_id": pid, "party": party}
        )
        with sessions() as session, session.begin():
            table["case.proposal_accepted"](
                session,
                build_event(
                    source="odr/complaints",
                    event_type="case.proposal_accepted",
                    subject=case_id,
                    data=data,
                ),
            )
    proposal = client.get(f"/v1/cases/{case_id}", headers=me).json()["proposals"][0]
    assert proposal["consumer_answer"] == "accepted"
    assert proposal["platform_answer"] == "accepted"
    assert proposal["status"] == "accepted"


def test_no_eligible_neutral_queues_the_case_until_capacity_frees(
    client: TestClient, settings, sessions
) -> None:
    body = neutral_body(max_active_cases=1)
    nid = client.post("/v1/neutrals", json=body, headers=admin_headers(settings)).json()[
        "neutral_id"
    ]
    first = escalate(sessions, settings)
    second = escalate(sessions, settings)
    queue = client.get("/v1/queue", headers=admin_headers(settings)).json()
    assert [c["case_id"] for c in queue] == [second]
    assert queue[0]["waiting_role"] == "mediator"
    loads = client.get("/v1/neutrals", headers=admin_headers(settings)).json()
    assert loads[0]["active_cases"] == 1
    # The first case resolves: its mediator's capacity frees and the queue moves.
    with sessions() as session, session.begin():
        service.case_left(
            session, case_event(case_id=first, status="resolved"), "case.resolved", settings
        )
    assert client.get("/v1/queue", headers=admin_headers(settings)).json() == []
    me = login(client, body["email"])
    assert [a["case_id"] for a in client.get("/v1/assignments", headers=me).json()] == [second]
    types = [t for t, _ in outbox(sessions)]
    assert types == ["case.assigned", "case.queued", "case.assigned"]
    routing = client.get(f"/v1/cases/{second}/routing", headers=admin_headers(settings)).json()
    assert [r["outcome"] for r in routing] == ["queued", "assigned"]
    assert routing[0]["excluded_by"]["capacity"] == 1
    assert nid in routing[1]["chosen"]


def test_leave_and_availability_updates_move_the_queue(
    client: TestClient, settings, sessions
) -> None:
    body = neutral_body(languages=["hmn"])
    nid = client.post("/v1/neutrals", json=body, headers=admin_headers(settings)).json()[
        "neutral_id"
    ]
    r = client.patch(
        f"/v1/neutrals/{nid}", json={"on_leave": True}, headers=admin_headers(settings)
    )
    assert r.status_code == 200
    assert r.json()["on_leave"] is True
    client.post("/v1/neutrals", json=neutral_body(), headers=admin_headers(settings))  # vi only
    case_id = escalate(sessions, settings, language="hmn")
    assert [
        c["case_id"] for c in client.get("/v1/queue", headers=admin_headers(settings)).json()
    ] == [case_id]
    admin = admin_headers(settings)
    hours = {"working_hours": {"start": "08:00", "end": "17:30"}}
    r = client.patch(f"/v1/neutrals/{nid}", json=hours, headers=admin)
    assert r.json()["working_hours"] == {"start": "08:00", "end": "17:30"}
    bad = {"working_hours": {"start": "8h", "end": "x"}}
    assert client.patch(f"/v1/neutrals/{nid}", json=bad, headers=admin).status_code == 422
    r = client.patch(
        f"/v1/neutrals/{nid}",
        json={
            "categories": ["counterfeit", "not_delivered"],
            "languages": ["HMN", "vi"],
            "conflicts": {"platform_ids": ["plt_9"], "seller_ids": []},
        },
        headers=admin,
    )
    assert r.json()["categories"] == ["counterfeit", "not_delivered"]
    assert r.json()["languages"] == ["hmn", "vi"]
    assert r.json()["conflicts"] == {"platform_ids": ["plt_9"], "seller_ids": []}
    still_waiting = client.get("/v1/queue", headers=admin).json()  # still on leave
    assert [c["case_id"] for c in still_waiting] == [case_id]
    r = client.patch(
        f"/v1/neutrals/{nid}",
        json={"on_leave": False, "clear_working_hours": True},
        headers=admin,
    )
    assert r.json()["working_hours"] is None
    assert client.get("/v1/queue", headers=admin).json() == []
    assert (
        client.get(f"/v1/cases/{case_id}", headers=login(client, body["email"])).status_code == 200
    )


def test_a_neutral_who_does_not_act_within_the_sla_is_replaced(
    client: TestClient, settings, sessions
) -> None:
    a, b = neutral_body(), neutral_body()
    for body in (a, b):
        client.post("/v1/neutrals", json=body, headers=admin_headers(settings))
    case_id = escalate(sessions, settings)
    view = client.get(f"/v1/cases/{case_id}", headers=admin_headers(settings)).json()
    first = view["assignments"][0]["neutral_id"]
    later = datetime.now(UTC) + timedelta(days=10)
    with sessions() as session, session.begin():
        assert service.sweep_sla(session, settings, later) == 1
    view = client.get(f"/v1/cases/{case_id}", headers=admin_headers(settings)).json()
    statuses = [(x["neutral_id"], x["status"]) for x in view["assignments"]]
    assert statuses[0] == (first, "replaced")
    assert statuses[1][0] != first
    assert statuses[1][1] == "active"
    reassigned = [d for t, d in outbox(sessions) if t == "case.reassigned"]
    assert reassigned[0]["details"]["previous_neutral_id"] == first
    # Acting in time keeps the assignment.
    with sessions() as session:
        email = session.get(Neutral, statuses[1][0]).email
    r = client.post(
        f"/v1/cases/{case_id}/proposals",
        headers=login(client, email),
        json={"outcome": "replacement", "terms": "send a new one"},
    )
    assert r.status_code == 201
    with sessions() as session, session.begin():
        assert service.sweep_sla(session, settings, later + timedelta(days=10)) == 0
