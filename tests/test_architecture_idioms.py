"""One idiom per concern (issue 17): the one text-table formatter, to_json alike on every file
type, the "format" header of new files (old "schema" files still read), the public names that
``from hwq import *`` brings."""
import pytest

from hwq._table import text_table


def test_text_table_hand_worked():
    # Widths by hand: col 1 = len("layer") = 5, col 2 = len("12,345") = 6, col 3 = len("bits") = 4.
    t = text_table(["layer", "MACs", "bits"], [["c1", "12,345", "4"], ["fc", "7", "8f"]],
                   total=["total", "12,352", ""], left=1)
    assert t == ("layer    MACs  bits\n"
                 "-------------------\n"
                 "c1     12,345     4\n"
                 "fc          7    8f\n"
                 "-------------------\n"
                 "total  12,352      ")


def test_text_table_without_total_and_two_left_columns():
    assert text_table(["a", "b", "n"], [["xx", "y", "1"]], left=2) == "a   b  n\n--------\nxx  y  1"


def test_text_table_refuses_a_ragged_row():
    with pytest.raises(ValueError, match=r"has 2 cells: expected 3"):
        text_table(["a", "b", "c"], [["1", "2"]])
