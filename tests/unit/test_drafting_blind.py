"""The blind drafting set (tests/fixtures/transcripts_blind/drafting_blind.yaml).

Written without looking at the taxonomy keyword lists and measured once; its
accuracy is reported by ``python -m gateway.drafting.report --fixtures <file> -v``,
never asserted here (asserting a threshold would invite tuning against it).
These tests only check that the set is complete and consistent, and that the
report over it is well-formed.
"""
from pathlib import Path

import pytest

from gateway.drafting import load_drafter
from gateway.drafting.report import FIELDS, evaluate, load_fixtures

BLIND = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts_blind" / "drafting_blind.yaml"
PLACE_FIELDS = ("district", "street", "road", "community")
URGENCY_LEVELS = {"emergency", "difficult", "general", "consultation"}


@pytest.fixture(scope="module")
def drafter():
    return load_drafter()


@pytest.fixture(scope="module")
def fixtures():
    return load_fixtures(BLIND)


def test_blind_set_has_at_least_thirty_entries_with_unique_ids(fixtures):
    assert len(fixtures) >= 30
    ids = [fx.id for fx in fixtures]
    assert len(ids) == len(set(ids))


def test_blind_set_covers_every_category(drafter, fixtures):
    assert {fx.expected["category"] for fx in fixtures} == {c.code for c in drafter.taxonomy.categories}


def test_blind_expected_values_use_known_codes_and_fields(drafter, fixtures):
    topics = {t.code for t in drafter.taxonomy.topics}
    for fx in fixtures:
        assert set(fx.expected) <= set(FIELDS), fx.id
        assert fx.expected.get("topic") is None or fx.expected["topic"] in topics, fx.id
        assert fx.expected["urgency"] in URGENCY_LEVELS, fx.id
        number = fx.expected.get("number")
        assert number is None or (isinstance(number, str) and number.isdigit()), fx.id


def test_every_place_in_the_blind_set_exists_in_the_gazetteer(drafter, fixtures):
    places = {(pl.kind, pl.name): pl for pl in drafter.gazetteer.places}
    for fx in fixtures:
        for kind in PLACE_FIELDS:
            name = fx.expected.get(kind)
            if name is not None:
                assert (kind, name) in places, f"{fx.id}: {kind} {name!r} not in the gazetteer"
        # the district/street pair, when both are given, must be one the gazetteer knows
        district, street = fx.expected.get("district"), fx.expected.get("street")
        if district and street:
            assert (district, street) in places[("street", street)].pairs, fx.id
        for kind in ("road", "community"):
            name = fx.expected.get(kind)
            if name is None:
                continue
            pairs = places[(kind, name)].pairs
            if street:
                assert any(s == street for _, s in pairs), f"{fx.id}: {name} is not in {street}"
            if district:
                assert any(d == district for d, _ in pairs), f"{fx.id}: {name} is not in {district}"


def test_report_over_the_blind_set_is_well_formed(drafter, fixtures, capsys):
    """No accuracy threshold: the figure is reported (pytest -s shows it), not asserted."""
    report = evaluate(drafter, fixtures)
    with capsys.disabled():
        print("\n" + report.format())
    assert report.total == len(fixtures)
    assert set(report.correct) == set(FIELDS)
    for name in FIELDS:
        assert 0 <= report.correct[name] <= report.total
        assert 0.0 <= report.accuracy(name) <= 1.0
    assert len(report.mismatches) == sum(report.total - report.correct[name] for name in FIELDS)
    ids = {fx.id for fx in fixtures}
    assert all(fid in ids and name in FIELDS for fid, name, _, _ in report.mismatches)
