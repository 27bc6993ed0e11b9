"""Routing rules, one test per rule, and a property: no ineligible neutral is ever chosen."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from mediation.routing import CaseNeeds, NeutralProfile, choose, failed_rule, is_available

# A Wednesday, 10:00 in Hanoi.
NOW = datetime(2026, 11, 18, 3, 0, tzinfo=UTC)
CASE = CaseNeeds(
    case_id="c1",
    role="mediator",
    category="not_delivered",
    language="vi",
    platform_id="plt_1",
    seller_id="seller-1",
)


def neutral(nid: str = "n1", **kw: object) -> NeutralProfile:
    values: dict[str, object] = {
        "neutral_id": nid,
        "roles": frozenset({"mediator"}),
        "categories": frozenset({"not_delivered"}),
        "languages": frozenset({"vi"}),
        "max_active_cases": 5,
        "active_cases": 0,
    }
    values.update(kw)
    return NeutralProfile(**values)  # type: ignore[arg-type]


def test_an_eligible_neutral_passes_every_rule() -> None:
    assert failed_rule(neutral(), CASE, NOW) is None


def test_role_rule_excludes_a_neutral_without_the_role() -> None:
    assert failed_rule(neutral(roles=frozenset({"arbitrator"})), CASE, NOW) == "role"


def test_category_rule_excludes_other_specialities() -> None:
    assert failed_rule(neutral(categories=frozenset({"counterfeit"})), CASE, NOW) == "category"


def test_language_rule_requires_the_case_language() -> None:
    assert failed_rule(neutral(languages=frozenset({"en"})), CASE, NOW) == "language"


def test_minority_language_has_no_fallback_to_vietnamese() -> None:
    hmong = CaseNeeds(**{**CASE.__dict__, "language": "hmn"})
    assert failed_rule(neutral(languages=frozenset({"vi", "en"})), hmong, NOW) == "language"
    assert failed_rule(neutral(languages=frozenset({"vi", "hmn"})), hmong, NOW) is None
    outcome = choose(hmong, [neutral("vi-only"), neutral("hmn", languages=frozenset({"hmn"}))], NOW)
    assert [n.neutral_id for n in outcome.chosen] == ["hmn"]
    assert outcome.minority_language


def test_conflict_with_the_platform_excludes() -> None:
    assert failed_rule(neutral(conflict_platform_ids=frozenset({"plt_1"})), CASE, NOW) == "conflict"


def test_conflict_with_the_seller_excludes() -> None:
    n = neutral(conflict_seller_ids=frozenset({"seller-1"}))
    assert failed_rule(n, CASE, NOW) == "conflict"
    other_seller = CaseNeeds(**{**CASE.__dict__, "seller_id": "seller-2"})
    assert failed_rule(n, other_seller, NOW) is None


def test_a_neutral_on_leave_is_unavailable() -> None:
    assert failed_rule(neutral(on_leave=True), CASE, NOW) == "availability"


def test_working_hours_are_read_in_vietnam_time() -> None:
    office = neutral(work_start=time(8, 0), work_end=time(17, 0))
    assert is_available(office, NOW)  # 10:00 local
    assert not is_available(office, NOW + timedelta(hours=9))  # 19:00 local
    assert not is_available(office, datetime(2026, 11, 21, 3, 0, tzinfo=UTC))  # Saturday
    night = neutral(work_start=time(22, 0), work_end=time(6, 0))
    assert is_available(night, NOW + timedelta(hours=13))  # 23:00 local
    assert failed_rule(office, CASE, NOW + timedelta(hours=9)) == "availability"


def test_a_full_neutral_is_excluded_by_capacity() -> None:
    assert failed_rule(neutral(active_cases=5), CASE, NOW) == "capacity"


def test_an_excluded_neutral_is_not_chosen_again() -> None:
    replaced = CaseNeeds(**{**CASE.__dict__, "excluded": frozenset({"n1"})})
    assert failed_rule(neutral(), replaced, NOW) == "excluded"


def test_least_loaded_wins() -> None:
    outcome = choose(CASE, [neutral("busy", active_cases=3), neutral("idle", active_cases=1)], NOW)
    assert [n.neutral_id for n in outcome.chosen] == ["idle"]


def test_on_equal_load_the_longest_since_last_assignment_wins() -> None:
    recent = neutral("recent", last_assigned_at=NOW - timedelta(hours=1))
    older = neutral("older", last_assigned_at=NOW - timedelta(days=3))
    never = neutral("never")
    assert [n.neutral_id for n in choose(CASE, [recent, older], NOW).chosen] == ["older"]
    assert [n.neutral_id for n in choose(CASE, [recent, older, never], NOW).chosen] == ["never"]


def test_counts_per_rule_and_queue_when_nobody_qualifies() -> None:
    outcome = choose(
        CASE,
        [
            neutral("a", on_leave=True),
            neutral("b", active_cases=5),
            neutral("c", roles=frozenset()),
        ],
        NOW,
    )
    assert not outcome.assigned
    assert outcome.chosen == []
    assert outcome.excluded_by["availability"] == 1
    assert outcome.excluded_by["capacity"] == 1
    assert outcome.excluded_by["role"] == 1
    assert "queue" in outcome.explanation()


def test_a_panel_is_all_or_nothing() -> None:
    two = [neutral("a"), neutral("b")]
    assert choose(CASE, two, NOW, needed=3).chosen == []
    three = [*two, neutral("c", active_cases=2)]
    assert [n.neutral_id for n in choose(CASE, three, NOW, needed=3).chosen] == ["a", "b", "c"]


ids = st.sampled_from([f"n{i}" for i in range(8)])
profiles = st.builds(
    NeutralProfile,
    neutral_id=ids,
    roles=st.frozensets(st.sampled_from(["mediator", "arbitrator"])),
    categories=st.frozensets(st.sampled_from(["not_delivered", "counterfeit", "damaged"])),
    languages=st.frozensets(st.sampled_from(["vi", "en", "hmn", "km"])),
    max_active_cases=st.integers(1, 4),
    active_cases=st.integers(0, 5),
    on_leave=st.booleans(),
    work_start=st.none() | st.times(),
    work_end=st.none() | st.times(),
    last_assigned_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    conflict_platform_ids=st.frozensets(st.sampled_from(["plt_1", "plt_2"])),
    conflict_seller_ids=st.frozensets(st.sampled_from(["seller-1", "seller-2"])),
)
needs = st.builds(
    CaseNeeds,
    case_id=st.just("c"),
    role=st.sampled_from(["mediator", "arbitrator"]),
    category=st.sampled_from(["not_delivered", "counterfeit", "damaged"]),
    language=st.sampled_from(["vi", "en", "hmn", "km"]),
    platform_id=st.sampled_from(["plt_1", "plt_2"]),
    seller_id=st.none() | st.sampled_from(["seller-1", "seller-2"]),
    excluded=st.frozensets(ids, max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(
    case=needs,
    pool=st.lists(profiles, max_size=12),
    now=st.datetimes(timezones=st.just(UTC)),
    needed=st.integers(1, 3),
)
def test_no_conflicted_unavailable_or_full_neutral_is_ever_chosen(
    case: CaseNeeds, pool: list[NeutralProfile], now: datetime, needed: int
) -> None:
    outcome = choose(case, pool, now, needed=needed)
    for n in outcome.chosen:
        assert case.platform_id not in n.conflict_platform_ids
        assert case.seller_id is None or case.seller_id not in n.conflict_seller_ids
        assert not n.on_leave
        assert is_available(n, now)
        assert n.active_cases < n.max_active_cases
        assert case.role in n.roles
        assert case.category in n.categories
        assert case.language in n.languages
        assert n.neutral_id not in case.excluded
    eligible = [n for n in pool if failed_rule(n, case, now) is None]
    # Someone is chosen exactly when enough are eligible, and the chosen are the least loaded.
    assert outcome.assigned == (len(eligible) >= needed)
    if outcome.assigned:
        worst = max(n.active_cases for n in outcome.chosen)
        left_out = [n for n in eligible if n not in outcome.chosen]
        assert all(n.active_cases >= worst for n in left_out)
    assert sum(outcome.excluded_by.values()) + len(eligible) == len(pool)
