"""Transcript normalisation: numerals become digits only where they are numbers; personal numbers are masked."""
import re

from hypothesis import given
from hypothesis import strategies as st

from gateway.drafting.normalize import compact, convert_numerals, normalize

CN = {"0": "零", "1": "一", "2": "二", "3": "三", "4": "四", "5": "五", "6": "六", "7": "七", "8": "八", "9": "九"}


def test_road_number_spoken_with_units_becomes_digits():
    assert convert_numerals("幸福路一百二十三号") == "幸福路123号"


def test_room_number_spoken_digit_by_digit():
    assert convert_numerals("三楼二零三") == "3楼203"


def test_words_containing_numeral_characters_are_left_alone():
    text = "一直没人管万一出事十分着急暖气一点都不热千万别挂"
    assert convert_numerals(text) == text


def test_a_range_like_qi_ba_tian_stays_spoken():
    assert convert_numerals("已经七八天了") == "已经七八天了"


def test_ordinal_and_clock_times():
    assert convert_numerals("第三次打电话晚上十二点还在施工") == "第3次打电话晚上12点还在施工"


def test_protected_place_names_keep_their_numerals():
    out = convert_numerals("五一路一百号滨江一号小区", protected=["五一路", "滨江一号小区"])
    assert out == "五一路100号滨江一号小区"


def test_asr_word_gaps_are_removed_but_latin_words_keep_a_space():
    assert compact(" 我 家 楼下 的 KTV bar 太 吵 ") == "我家楼下的KTV bar太吵"


def test_mobile_spoken_with_yao_is_masked_and_reported():
    n = normalize("我 电话 是 幺三八 零零幺三 八零零零 谢谢")
    assert n.masked == "我电话是138****8000谢谢"
    assert n.phones_masked == ["138****8000"]


def test_mobile_in_arabic_digits_with_spaces_is_masked():
    n = normalize("回电 138 0013 8000")
    assert "13800138000" not in n.masked and n.phones_masked == ["138****8000"]


def test_landline_with_area_code_is_masked():
    n = normalize("座机 零二五 八七六五四三二一 有事 打 一二三四五")
    assert n.masked == "座机025****4321有事打12345"
    assert [p.kind for p in n.numbers] == ["landline"]


def test_id_card_with_spoken_x_is_masked_entirely_but_the_ends():
    n = normalize("身份证号 三二零一零二一九八五零三一五一二三叉")
    assert n.masked == "身份证号32**************3X"
    assert n.id_cards_masked == ["32**************3X"]
    assert "320102" not in n.masked


def test_large_amounts_are_numbers_not_personal_data():
    n = normalize("损失 了 一百二十万元 还有 一千五百万 平米")
    assert n.masked == "损失了1200000元还有15000000平米" and n.numbers == ()


def test_service_numbers_stay_readable():
    assert normalize("我打过12345和幺幺零").masked == "我打过12345和110"


@given(
    digits=st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
    yao=st.booleans(),
    gaps=st.lists(st.integers(min_value=1, max_value=10), max_size=3),
    before=st.sampled_from(["我的电话是", "请打", "联系方式", "", "回电话到"]),
    after=st.sampled_from(["谢谢", "找张先生", "", "随时可以打"]),
)
def test_any_spoken_mobile_number_never_survives_in_the_masked_text(digits, yao, gaps, before, after):
    spoken = [("幺" if yao and d == "1" else CN[d]) for d in digits]
    for g in sorted(set(gaps), reverse=True):
        spoken.insert(g, " ")
    n = normalize(before + " " + "".join(spoken) + " " + after)
    assert digits not in n.masked
    assert n.phones_masked == [digits[:3] + "****" + digits[-4:]]
    assert re.sub(r"\D", "", n.masked) == digits[:3] + digits[-4:]
