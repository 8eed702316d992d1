from hypothesis import given
from hypothesis import strategies as st

from soko.object.shared.timestamps import Timestamp


def test_normal_form_is_swifts():
    assert Timestamp.parse("1700000000.123456").normal == "1700000000.12346"
    assert Timestamp.parse(5).normal == "0000000005.00000"
    assert Timestamp.parse("1700000000.5").http_date == "Tue, 14 Nov 2023 22:13:21 GMT"


@given(st.integers(0, 10**15 - 1), st.integers(0, 10**15 - 1))
def test_text_order_is_time_order(a, b):
    ta, tb = Timestamp(a), Timestamp(b)
    assert (ta < tb) == (ta.normal < tb.normal)
    assert Timestamp.parse(ta.normal) == ta
