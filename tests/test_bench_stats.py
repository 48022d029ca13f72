"""The benchmark's pure helpers (bench/stats.py): the figures in the README's Performance section come from these."""
import pytest

from bench.stats import fmt, format_table, markdown_table, mb_per_s, median, percentile, ratio


def test_percentile_interpolates_between_ranks():
    data = [4, 1, 3, 2]
    assert percentile(data, 0) == 1
    assert percentile(data, 100) == 4
    assert percentile(data, 50) == 2.5
    assert percentile(range(1, 101), 99) == pytest.approx(99.01)
    assert percentile([7], 99) == 7


def test_percentile_and_median_of_nothing_is_none():
    assert percentile([], 50) is None
    assert median([]) is None
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_median_odd_and_even():
    assert median([3, 1, 2]) == 2
    assert median([1, 2, 3, 10]) == 2.5


def test_ratio_and_throughput_guard_missing_values():
    assert ratio(3, 4) == 0.75
    assert ratio(None, 4) is None
    assert ratio(3, 0) is None
    assert mb_per_s(50_000_000, 0.5) == 100
    assert mb_per_s(1, None) is None


def test_fmt():
    assert fmt(None) == "n/a"
    assert fmt(0.934, "%") == "93%"
    assert fmt(8.3, "x") == "8.30x"
    assert fmt(0.0912, "s") == "0.091 s"
    assert fmt(12.34, "s") == "12.3 s"
    assert fmt(1234.5) == "1234"
    assert fmt(3) == "3"
    assert fmt(True) == "yes"


def test_tables_align_and_escape():
    rows = [["1 a", "figure", "1.00 s", "< 1.5 s met"], ["", "b|c", "2", ""]]
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].startswith("#")
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].index("figure") == lines[0].index("figure")
    md = markdown_table(rows)
    assert md.splitlines()[1] == "|---|---|---|---|"
    assert "b\\|c" in md
