from __future__ import annotations

import pytest
from modelgate_shared.stored_text import (
    SingleLineText,
    StoredText,
    control_character,
    storable,
    unstorable_character,
)
from pydantic import TypeAdapter, ValidationError

stored = TypeAdapter(StoredText)
single_line = TypeAdapter(SingleLineText)


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("plain", None),
        ("tab\tand\nnewline", None),
        ("é, 中文, emoji 🙂", None),
        ("nul\x00here", "U+0000 at position 3"),
        ("lone \ud800 high", "U+D800 at position 5"),
        ("\udfff", "U+DFFF at position 0"),
    ],
)
def test_unstorable_character_names_what_postgres_cannot_hold(value: str, found: str | None) -> None:
    assert unstorable_character(value) == found


@pytest.mark.parametrize(
    "value",
    ["a\x00b", "a\x07b", "a\nb", "a\rb", "a\tb", "a\x1bb", "a\x7fb", "a\x85b", "a\u2028b", "a\u202eb", "a\u2066b"],
)
def test_single_line_text_refuses_controls_breaks_and_bidi_overrides(value: str) -> None:
    assert control_character(value) is not None
    with pytest.raises(ValidationError) as caught:
        single_line.validate_python(value)
    message = caught.value.errors()[0]["msg"]
    assert f"U+{ord(value[1]):04X} at position 1" in message


def test_validation_messages_never_quote_the_text() -> None:
    with pytest.raises(ValidationError) as caught:
        stored.validate_python("my-secret\x00")
    assert "my-secret" not in caught.value.errors()[0]["msg"]


def test_stored_text_allows_multi_line_text_but_not_nul_or_surrogates() -> None:
    assert stored.validate_python("line one\nline two\t!") == "line one\nline two\t!"
    assert single_line.validate_python("Zoë O'Brien-Łukasz 中文") == "Zoë O'Brien-Łukasz 中文"
    for bad in ("x\x00", "x\ud800"):
        with pytest.raises(ValidationError):
            stored.validate_python(bad)


def test_storable_replaces_what_cannot_be_stored_and_keeps_the_rest() -> None:
    assert storable("Mozilla/5.0") == "Mozilla/5.0"
    assert storable("a\x00b\ud800c é") == "a\ufffdb\ufffdc é"
    assert len(storable("\x00" * 10)) == 10
    assert storable("x\x00").encode()  # UTF-8 encodable now
