from bench.profiling import summarize

FOLDED = """\
process 1:"uvicorn";run (asyncio/runners.py:118);handle (gw/proxy.py:40);verify (jose/jws.py:10) 30
process 1:"uvicorn";run (asyncio/runners.py:118);handle (gw/proxy.py:41);send (httpx/_client.py:9) 50
process 1:"uvicorn";run (asyncio/runners.py:118);log (gw/log.py:5) 20
"""


def test_summary_groups_lines_of_one_function_and_splits_self_from_inclusive() -> None:
    text = summarize(FOLDED)
    lines = text.splitlines()
    assert lines[0].startswith("100 samples")
    inclusive = lines[lines.index("inclusive%  function") + 1 :]
    assert inclusive[0].split() == ["100.0", "run", "(asyncio/runners.py)"]
    assert "80.0  handle (gw/proxy.py)" in text  # lines 40 and 41 are one function
    own = lines[lines.index("self%      function") + 1 :]
    assert own[0].split() == ["50.0", "send", "(httpx/_client.py)"]


def test_empty_profile_says_so() -> None:
    assert summarize("").startswith("no samples")
