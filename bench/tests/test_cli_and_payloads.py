import json

import numpy as np
import pytest

from bench import payloads
from bench.cli import parse_args


def test_quick_run_flags() -> None:
    options, strict = parse_args(["--duration", "2", "--warmup", "1", "--only", "secured,baseline", "--strict"])
    assert (options.duration, options.warmup, strict) == (2.0, 1.0, True)
    assert options.scenarios == ("baseline", "secured")  # run order, not argument order
    assert options.concurrency == (1, 16)


@pytest.mark.parametrize("argv", [["--only", "nope"], ["--duration", "0"], ["--concurrency", "0,16"]])
def test_bad_flags_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2


def test_batch_body_and_in_process_matrix_hold_the_same_rows() -> None:
    body = json.loads(payloads.v1_predict(100))
    as_matrix = np.array([[row[f] for f in payloads.FEATURES] for row in body["instances"]])
    assert as_matrix.shape == (100, 8)
    assert np.array_equal(as_matrix, payloads.matrix(100))
    assert payloads.v1_predict(100) == payloads.v1_predict(100)  # same bytes every run


def test_single_row_bodies_are_the_issue_example() -> None:
    assert json.loads(payloads.v1_predict())["instances"][0] == {
        "preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50,
    }  # fmt: skip
    tensor = json.loads(payloads.v2_infer("x"))["inputs"][0]
    assert tensor["name"] == "x" and tensor["shape"] == [1, 8] and tensor["datatype"] == "FP64"


def test_profile_and_env_flags() -> None:
    options, _ = parse_args(["--profile", "secured", "--env", "MODELGATE_AUTH_BCRYPT_NICE=10"])
    assert options.profile == ("secured",)
    assert options.name == "profiled"  # a profiled run never overwrites latest.*
    assert options.stack_env == (("MODELGATE_AUTH_BCRYPT_NICE", "10"),)
    with pytest.raises(SystemExit):
        parse_args(["--env", "PATH=/tmp"])
