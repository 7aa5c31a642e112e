"""Unit tests of the pure input checks (no HTTP)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from inference_service.csv_io import parse_csv
from inference_service.json_body import InvalidJson, parse_json
from inference_service.v2_protocol import split_body
from inference_service.validation import InputError, TooManyRows, check_finite, instances_to_matrix, number_problem

FEATURES = ("a", "b", "c")


def test_records_and_rows_become_one_matrix() -> None:
    matrix = instances_to_matrix([{"c": 3, "a": 1, "b": 2.5}, [4, 5, 6]], FEATURES, 10)
    assert matrix.dtype == np.float64
    assert matrix.tolist() == [[1, 2.5, 3], [4, 5, 6]]


@pytest.mark.parametrize(
    ("instances", "locs"),
    [
        ([{"a": 1, "b": 2}], [("body", "instances", 0, "c")]),
        ([{"a": 1, "b": 2, "c": 3, "d": 4}], [("body", "instances", 0, "d")]),
        ([{"a": 1, "b": 2, "x": 3}], [("body", "instances", 0, "c"), ("body", "instances", 0, "x")]),
        ([[1, 2, 3], {"a": 1, "b": 2, "c": False}], [("body", "instances", 1, "c")]),
        ([[1, 2, 3], [1, "2", None]], [("body", "instances", 1, "b"), ("body", "instances", 1, "c")]),
        ([[1, 2, math.nan]], [("body", "instances", 0, "c")]),
        ([[1, 2, -math.inf]], [("body", "instances", 0, "c")]),
        ([[1, 2, 10**400]], [("body", "instances", 0, "c")]),
        ([[1, 2, [3]]], [("body", "instances", 0, "c")]),
        ([[1, 2]], [("body", "instances", 0)]),
        ([3], [("body", "instances", 0)]),
        ([], [("body", "instances")]),
    ],
)
def test_each_problem_is_located(instances: list[object], locs: list[tuple[object, ...]]) -> None:
    with pytest.raises(InputError) as info:
        instances_to_matrix(instances, FEATURES, 10)
    assert [p.loc for p in info.value.problems] == locs


@pytest.mark.parametrize(
    ("bad_row", "fields"),
    [
        ({"a": 1, "b": True, "c": 3}, ["b"]),
        ({"a": 1, "b": 2, "z": 3}, ["c", "z"]),
        ([1, 2, "3"], ["c"]),
        ([1, 2, 3, 4], []),
        (None, []),
    ],
)
def test_one_bad_row_in_a_big_batch_is_located(bad_row: object, fields: list[str]) -> None:
    instances: list[object] = [{"a": 1, "b": 2.5, "c": i} for i in range(500)]
    instances[437] = bad_row
    with pytest.raises(InputError) as info:
        instances_to_matrix(instances, FEATURES, 500)
    row = ("body", "instances", 437)
    assert [p.loc for p in info.value.problems] == ([(*row, f) for f in fields] or [row])


def test_too_many_rows() -> None:
    with pytest.raises(TooManyRows) as info:
        instances_to_matrix([[1, 2, 3]] * 11, FEATURES, 10)
    assert (info.value.rows, info.value.limit) == (11, 10)


def test_problem_reports_are_capped() -> None:
    with pytest.raises(InputError) as info:
        instances_to_matrix([["x", "y", "z"]] * 1000, FEATURES, 1000)
    assert len(info.value.problems) == 20


@pytest.mark.parametrize(
    ("value", "ok"),
    [(1, True), (1.5, True), (-0.0, True), (True, False), ("1", False), (None, False), (math.nan, False)],
)
def test_number_problem(value: object, ok: bool) -> None:
    assert (number_problem(value) is None) is ok


def test_check_finite_names_row_and_feature() -> None:
    matrix = np.array([[1.0, 2.0, 3.0], [1.0, np.inf, 3.0]])
    with pytest.raises(InputError) as info:
        check_finite(matrix, FEATURES, ("inputs",))
    (problem,) = info.value.problems
    assert problem.loc == ("inputs", 1, "b")
    check_finite(matrix[:1], FEATURES, ("inputs",))


def test_parse_json_reads_nan_for_validation_but_rejects_garbage() -> None:
    assert math.isnan(parse_json(b'{"x": NaN}')["x"])
    for body in (b"", b"  ", b"{", b"\xff"):
        with pytest.raises(InvalidJson):
            parse_json(body)


def test_split_body() -> None:
    payload, tail = split_body(b'{"inputs": []}\x01\x02', "14")
    assert payload == {"inputs": []} and tail == b"\x01\x02"
    for header in ("0", "-1", "abc", "100"):
        with pytest.raises(InvalidJson):
            split_body(b"{}", header)


def test_parse_csv_ignores_blank_lines_and_counts_lines_like_an_editor() -> None:
    text = b"a,b,c\n1,2,3\n\n4,5,6\n7,x,9\n"
    with pytest.raises(InputError) as info:
        parse_csv(text, FEATURES, 10)
    assert info.value.problems[0].msg == "line 5, column 'b': 'x' is not a number"
    assert parse_csv(text.replace(b"x", b"8"), FEATURES, 10).tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_parse_csv_handles_bom_quotes_and_crlf() -> None:
    text = '\ufeff"c",b,a\r\n"3", 2 ,1\r\n'.encode()
    assert parse_csv(text, FEATURES, 10).tolist() == [[1, 2, 3]]
