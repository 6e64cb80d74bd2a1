"""Drafting accuracy over the fixture transcripts (tests/fixtures/transcripts)."""
import pytest

from gateway.drafting import load_drafter
from gateway.drafting.report import FIELDS, actual_fields, draft_fixture, evaluate, load_fixtures

FIXTURES = load_fixtures()
UNAMBIGUOUS = [fx for fx in FIXTURES if fx.unambiguous]


@pytest.fixture(scope="module")
def drafter():
    return load_drafter()


def test_there_are_at_least_forty_fixtures_covering_every_category_and_topic(drafter):
    assert len(FIXTURES) >= 40
    assert {fx.expected["category"] for fx in FIXTURES} == {c.code for c in drafter.taxonomy.categories}
    assert {fx.expected["topic"] for fx in FIXTURES} == {t.code for t in drafter.taxonomy.topics}


def test_per_field_accuracy_meets_the_minimum(drafter, capsys):
    """Prints the report (pytest -s shows it); category/topic >= 90%, location and urgency >= 85%."""
    report = evaluate(drafter, FIXTURES)
    with capsys.disabled():
        print("\n" + report.format())
    assert report.accuracy("category") >= 0.90
    assert report.accuracy("topic") >= 0.90
    for name in FIELDS[2:]:
        assert report.accuracy(name) >= 0.85, name


@pytest.mark.parametrize("fx", UNAMBIGUOUS, ids=[fx.id for fx in UNAMBIGUOUS])
def test_unambiguous_transcript_is_drafted_exactly(drafter, fx):
    got = actual_fields(draft_fixture(drafter, fx))
    want = {name: (str(fx.expected[name]) if fx.expected.get(name) is not None else None) for name in FIELDS}
    assert got == want
