"""Complaints' retention: the purge removes only what is past its period; a dry run nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from complaints import service
from complaints.models import (
    CaseRecord,
    CaseTransition,
    Evidence,
    Offer,
    OtpChallenge,
    PrivacyExport,
    TimelineEntry,
)
from complaints.privacy.state import new_request
from complaints.retention import RetentionJob, rules, sweep_orphan_files
from complaints.service import Deps
from odr_shared.auth import Party
from odr_shared.db import utcnow
from odr_shared.retention import Purger

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _count(deps: Deps, model: type) -> int:
    with deps.sessions() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def _ids(deps: Deps, column: object) -> set[str]:
    with deps.sessions() as session:
        return set(session.execute(select(column)).scalars())  # type: ignore[call-overload]


def test_purge_removes_only_expired_rows_and_a_dry_run_removes_nothing(
    deps: Deps, seed_order: Callable[..., str]
) -> None:
    s = deps.settings
    order = seed_order("RT1")
    party = Party("consumer", "c", platform_id="plat-a", order_id=order)
    rec = service.open_case(
        deps,
        party,
        order_code="RT1",
        category="damaged",
        description="Hàng vỡ khi giao tới nơi.",
        desired_outcome="refund",
        claimed_amount=None,
        language="vi",
    )
    files = {}
    for name in ("old", "recent", "open"):
        ev = service.add_evidence(deps, party, rec.id, f"{name}.png", PNG)
        files[name] = ev
    now = utcnow()
    closed = {
        "old": now - timedelta(days=s.retention_evidence_days + 1),
        "recent": now - timedelta(days=s.retention_evidence_days - 1),
        "open": None,
    }
    with deps.sessions.begin() as session:
        for name, ev in files.items():
            row = session.get(Evidence, ev.id)
            assert row is not None
            row.case_closed_at = closed[name]
        for name, expired in (
            ("old", now - timedelta(days=s.retention_otp_days, hours=1)),
            ("recent", now - timedelta(hours=1)),
            ("live", now + timedelta(minutes=5)),
        ):
            session.add(
                OtpChallenge(
                    id=name,
                    order_id=order,
                    phone_hash="h",
                    code_hash="c",
                    created_at=expired - timedelta(minutes=5),
                    expires_at=expired,
                    attempts=0,
                )
            )
        for name, expires in (
            ("gone", now - timedelta(minutes=1)),
            ("kept", now + timedelta(days=1)),
        ):
            req = new_request(
                session,
                kind="access",
                subject_id=f"sp_{uuid.uuid4().hex}",
                source="consumer",
                order_ids=[],
                case_ids=[],
                calendar=deps.calendar,
                answer_working_days=15,
            )
            session.add(
                PrivacyExport(
                    request_id=req.id,
                    export_enc=name.encode(),
                    size=4,
                    created_at=now,
                    expires_at=expires,
                )
            )
    engine = deps.sessions.kw["bind"]
    purger = Purger(engine, rules(s), batch_size=1)
    before = (_count(deps, OtpChallenge), _count(deps, Evidence), _count(deps, PrivacyExport))

    dry = purger.purge(dry_run=True)
    assert dry["otp_challenges"] == 1
    assert dry["case_evidence"] == 1
    assert dry["privacy_exports"] == 1
    assert (
        _count(deps, OtpChallenge),
        _count(deps, Evidence),
        _count(deps, PrivacyExport),
    ) == before

    done = purger.purge()
    assert {k: done[k] for k in ("otp_challenges", "case_evidence", "privacy_exports")} == {
        "otp_challenges": 1,
        "case_evidence": 1,
        "privacy_exports": 1,
    }
    assert _ids(deps, OtpChallenge.id) == {"recent", "live"}
    assert _ids(deps, Evidence.id) == {files["recent"].id, files["open"].id}
    assert {e for e in _ids(deps, PrivacyExport.export_enc)} == {b"kept"}
    assert purger.purge()["otp_challenges"] == 0

    # The purged evidence's file goes with the sweep; the others' files stay.
    root = Path(s.storage_dir)
    paths = {n: root / ev.storage_key[:2] / ev.storage_key for n, ev in files.items()}
    assert all(p.exists() for p in paths.values())
    assert sweep_orphan_files(deps, min_age_s=3600) == 0  # too young to be an orphan yet
    assert sweep_orphan_files(deps, min_age_s=0, dry_run=True) == 1
    assert paths["old"].exists()
    assert sweep_orphan_files(deps, min_age_s=0) == 1
    assert not paths["old"].exists()
    # The worker's round: the purge then the sweep; nothing more is due.
    job = RetentionJob(deps, purger, interval_s=3600)
    assert not any(job.run_once().values())
    assert paths["recent"].exists()
    assert paths["open"].exists()


def test_rules_cover_complaints_records_and_the_shared_ones(deps: Deps) -> None:
    names = {r.name for r in rules(deps.settings)}
    assert {"otp_challenges", "case_evidence", "privacy_exports", "case_records"} <= names
    assert len(names) > 3  # outbox, inbox, rate-limit windows from odr_shared


def test_a_closed_cases_free_text_goes_after_its_period_and_its_facts_stay(
    deps: Deps, seed_order: Callable[..., str]
) -> None:
    s = deps.settings
    texts = {}
    recs = {}
    for name in ("old", "recent"):
        order = seed_order(f"RT{name}")
        party = Party("consumer", "c", platform_id="plat-a", order_id=order)
        rec = service.open_case(
            deps,
            party,
            order_code=f"RT{name}",
            category="damaged",
            description=f"Description of the {name} case, long enough.",
            desired_outcome="refund",
            claimed_amount=1000,
            language="en",
        )
        platform = Party("platform", "p", platform_id="plat-a")
        service.post_message(deps, platform, rec.id, f"Message on the {name} case")
        offer = service.make_offer(deps, platform, rec.id, "refund", 1000, f"terms {name}")
        service.answer_offer(deps, party, rec.id, offer.id, True, f"reason {name}")
        texts[name] = (f"Description of the {name} case", f"Message on the {name} case")
        recs[name] = rec.id
    now = utcnow()
    with deps.sessions.begin() as session:
        for name, days in (("old", s.retention_case_records_days + 1), ("recent", 30)):
            case = session.get(CaseRecord, recs[name])
            assert case is not None
            assert case.closed_at is not None
            case.closed_at = now - timedelta(days=days)
    purger = Purger(deps.sessions.kw["bind"], rules(s))
    assert purger.purge(dry_run=True)["case_records"] == 1
    done = purger.purge()
    assert done["case_records"] == 1
    assert done["case_timeline"] >= 1
    assert done["case_offers_text"] == 1
    assert done["case_transition_reasons"] >= 1
    with deps.sessions() as session:
        old, recent = session.get(CaseRecord, recs["old"]), session.get(CaseRecord, recs["recent"])
        assert old is not None
        assert recent is not None
        assert old.description == ""
        assert (old.status, old.settled_by, old.claimed_amount) == ("resolved", "offer", 1000)
        assert recent.description.startswith("Description of the recent case")
        offers = {o.case_id: o for o in session.execute(select(Offer)).scalars()}
        assert offers[recs["old"]].terms is None
        assert offers[recs["old"]].answer_reason is None
        assert offers[recs["recent"]].terms == "terms recent"
        timeline = session.execute(select(TimelineEntry.case_id)).scalars().all()
        assert recs["old"] not in timeline
        assert recs["recent"] in timeline
        reasons = [
            t.reason
            for t in session.execute(
                select(CaseTransition).where(
                    CaseTransition.case_id == recs["old"], CaseTransition.actor_role != "system"
                )
            ).scalars()
        ]
        assert reasons
        assert all(r is None for r in reasons)
    assert not any(purger.purge().values())


def test_an_erased_cases_consent_outlives_its_timeline_until_the_cases_retention(
    deps: Deps, seed_order: Callable[..., str]
) -> None:
    """The proof that sharing with the neutral was agreed to stays when the rest of an emptied
    case's timeline goes, and goes itself with the case's retention period."""
    s = deps.settings
    order = seed_order("RTCONSENT")
    party = Party("consumer", "c", platform_id="plat-a", order_id=order)
    rec = service.open_case(
        deps,
        party,
        order_code="RTCONSENT",
        category="damaged",
        description="A case whose buyer is erased later, long enough.",
        desired_outcome="refund",
        claimed_amount=1000,
        language="vi",
    )
    service.post_message(deps, party, rec.id, "Một tin nhắn của người mua")
    service.withdraw(deps, party, rec.id, None)
    now = utcnow()
    with deps.sessions.begin() as session:
        case = session.get(CaseRecord, rec.id)
        assert case is not None
        case.description = ""  # what an erasure leaves
        session.add(
            TimelineEntry(
                entry_id=str(uuid.uuid4()),
                case_id=rec.id,
                kind="consent",
                actor_role="consumer",
                actor_id=None,
                at=now,
                body={"purpose": "share_with_neutral", "via": "escalation", "erased": True},
            )
        )
    purger = Purger(deps.sessions.kw["bind"], rules(s), pause_s=0)

    def kinds() -> list[str]:
        with deps.sessions() as session:
            return list(
                session.execute(
                    select(TimelineEntry.kind).where(TimelineEntry.case_id == rec.id)
                ).scalars()
            )

    assert "message" in kinds()
    assert purger.purge()["case_timeline"] >= 1
    assert kinds() == ["consent"]
    with deps.sessions.begin() as session:
        entry = session.execute(
            select(TimelineEntry).where(TimelineEntry.case_id == rec.id)
        ).scalar_one()
        entry.at = now - timedelta(days=s.retention_case_records_days + 1)
    assert purger.purge()["case_consents"] == 1
    assert kinds() == []
