"""The one table printer of the command-line tools."""

from __future__ import annotations

from controller.tables import format_table


def test_columns_align_under_a_rule_and_cut_trailing_blanks() -> None:
    text = format_table([["id", "name", "latency ms"], [1, "shenzhen-shaoguan", 2.191],
                         [15, "x", None]])
    assert text.splitlines() == [
        "id  name               latency ms",
        "--  -----------------  ----------",
        "1   shenzhen-shaoguan  2.191",
        "15  x                  None",
    ]


def test_columns_from_right_from_on_are_right_aligned() -> None:
    text = format_table([["host", "sent", "lost"], ["h1", "10", "0"], ["h-long", "200", "12"]],
                        right_from=1)
    assert text.splitlines() == [
        "host    sent  lost",
        "------  ----  ----",
        "h1        10     0",
        "h-long   200    12",
    ]


def test_a_header_alone_and_nothing_at_all() -> None:
    assert format_table([["a", "bb"]]) == "a  bb\n-  --"
    assert format_table([]) == ""
