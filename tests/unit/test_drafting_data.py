"""Taxonomy and gazetteer files: the packaged ones load; broken ones fail at load naming file and entry."""
from pathlib import Path

import pytest
import yaml

from gateway.drafting import DataFileError, load_drafter
from gateway.drafting.gazetteer import DEFAULT_GAZETTEER, load_gazetteer, locate
from gateway.drafting.taxonomy import DEFAULT_TAXONOMY, load_taxonomy

REQUIRED_TOPICS = {
    "water", "power", "gas", "heating", "property", "noise", "traffic", "social_security", "housing_fund",
    "sanitation", "urban_management", "education", "medical_insurance", "market_supervision",
}


def write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_packaged_taxonomy_has_the_six_categories_and_the_required_topics():
    tax = load_taxonomy()
    assert {c.code for c in tax.categories} == {"consultation", "help", "complaint", "report", "suggestion", "praise"}
    assert REQUIRED_TOPICS <= {t.code for t in tax.topics}
    assert tax.category("consultation").time_limit == "consultation"


def test_packaged_gazetteer_resolves_a_community_to_its_street_and_district():
    gaz = load_gazetteer()
    loc = locate(gaz, "我住锦绣花园小区3号楼2单元502")
    assert (loc.district, loc.street, loc.community) == ("江北区", "解放街道", "锦绣花园小区")
    assert (loc.building, loc.unit, loc.room) == ("3", "2", "502")


def test_a_road_in_two_districts_leaves_the_district_open_unless_one_is_named():
    gaz = load_gazetteer()
    assert locate(gaz, "长江路56号").district is None
    loc = locate(gaz, "城东区长江路56号")
    assert (loc.district, loc.street, loc.road, loc.number) == ("城东区", "东关街道", "长江路", "56")


def test_a_road_number_followed_by_lou_xia_is_the_number_not_a_building():
    loc = locate(load_gazetteer(), "创新路77号楼下有人摆摊")
    assert (loc.road, loc.number, loc.building) == ("创新路", "77", None)


def test_a_road_spanning_two_streets_of_one_district_fixes_the_district_only():
    loc = locate(load_gazetteer(), "人民路上")
    assert (loc.district, loc.street, loc.road) == ("江北区", None, "人民路")


def test_an_alias_names_the_canonical_community():
    assert locate(load_gazetteer(), "碧水家园门口").community == "碧水家园小区"


def test_the_longest_place_name_wins_over_a_shorter_one_inside_it():
    """南门街道 (a sub-district) is not the road 南门街."""
    loc = locate(load_gazetteer(), "南门街道办事处")
    assert (loc.street, loc.road) == ("南门街道", None)


def test_contradicting_places_are_reported_not_guessed():
    loc = locate(load_gazetteer(), "江北区滨江一号小区")
    assert loc.conflicts and loc.district == "江北区" and loc.community is None


def test_paths_can_be_overridden(tmp_path):
    tax = yaml.safe_load(DEFAULT_TAXONOMY.read_text(encoding="utf-8"))
    tax["topics"].append({"code": "pets", "label": "犬类管理", "keywords": {"遛狗": 4, "狗": 2}})
    gaz = {"city": "测试市", "districts": [{"name": "东区", "streets": [{"name": "甲街道", "roads": ["一号路"]}]}]}
    drafter = load_drafter(write(tmp_path, "t.yaml", tax), write(tmp_path, "g.yaml", gaz))
    _category, topic = drafter.classify("投诉 东区 有人 遛狗 不 拴绳")
    assert topic.code == "pets"
    assert drafter.locate("东区一号路").road == "一号路"


def test_a_bad_keyword_weight_names_file_section_and_code(tmp_path):
    tax = yaml.safe_load(DEFAULT_TAXONOMY.read_text(encoding="utf-8"))
    tax["topics"][2]["keywords"]["煤气"] = "high"
    path = write(tmp_path, "bad.yaml", tax)
    with pytest.raises(DataFileError) as err:
        load_taxonomy(path)
    message = str(err.value)
    assert str(path) in message and "topics[2] (code 'gas')" in message and "煤气" in message


def test_duplicate_category_code_is_refused(tmp_path):
    tax = yaml.safe_load(DEFAULT_TAXONOMY.read_text(encoding="utf-8"))
    tax["categories"].append(dict(tax["categories"][0]))
    with pytest.raises(DataFileError, match="duplicate code"):
        load_taxonomy(write(tmp_path, "dup.yaml", tax))


def test_a_seasonal_rule_for_an_unknown_topic_is_refused(tmp_path):
    tax = yaml.safe_load(DEFAULT_TAXONOMY.read_text(encoding="utf-8"))
    tax["urgency"]["emergency"]["seasonal"][0]["topic"] = "heat"
    with pytest.raises(DataFileError, match="unknown topic 'heat'"):
        load_taxonomy(write(tmp_path, "season.yaml", tax))


def test_a_bad_time_limit_is_refused(tmp_path):
    tax = yaml.safe_load(DEFAULT_TAXONOMY.read_text(encoding="utf-8"))
    tax["time_limits"]["general"] = "three"
    with pytest.raises(DataFileError, match="time_limits.general"):
        load_taxonomy(write(tmp_path, "tl.yaml", tax))


def test_duplicate_community_names_file_and_both_places(tmp_path):
    gaz = yaml.safe_load(DEFAULT_GAZETTEER.read_text(encoding="utf-8"))
    gaz["districts"][1]["streets"][0]["communities"].append("阳光社区")
    path = write(tmp_path, "gaz.yaml", gaz)
    with pytest.raises(DataFileError) as err:
        load_gazetteer(path)
    message = str(err.value)
    assert str(path) in message and "阳光社区" in message and "districts[0]" in message


def test_missing_and_malformed_files_are_clear_errors(tmp_path):
    with pytest.raises(DataFileError, match="cannot read"):
        load_taxonomy(tmp_path / "nope.yaml")
    bad = tmp_path / "x.yaml"
    bad.write_text("categories: [\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="not valid YAML"):
        load_taxonomy(bad)
