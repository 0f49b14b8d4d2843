"""PixVerse video ids as pixhook reads them from untrusted text: the receiver (a webhook's
``id``, and the id a refused one claims, for the log) and the operator's search share
:func:`service.pixverse.vocab.video_id` and :func:`~service.pixverse.vocab.id_digits`."""

from __future__ import annotations

import pytest

from service.pixverse import vocab


@pytest.mark.parametrize("raw, expected", [
    ("384920175633408000", 384920175633408000),
    (384920175633408000, 384920175633408000),
    ("1", 1),
    (str(2**63 - 1), 2**63 - 1),
])
def test_a_video_id_is_a_positive_64_bit_integer(raw: object, expected: int) -> None:
    assert vocab.video_id(raw) == expected


@pytest.mark.parametrize("raw", [
    "0", 0, "-1", -1, str(2**63), 2**63, "9" * 5000,  # out of range, or too long for int()
    "³", "٣٨٤", "1_000", " 1", "+1", "1.0", "",     # digits int() or PixVerse would not take
    True, 1.0, None, ["1"],                          # not a string or an int
])
def test_anything_else_is_not_a_video_id(raw: object) -> None:
    assert vocab.video_id(raw) is None


def test_id_digits_keeps_any_short_run_of_ascii_digits() -> None:
    assert vocab.id_digits("0") == "0" and vocab.id_digits(42) == "42"
    assert vocab.id_digits("9" * 19) == "9" * 19
    assert vocab.id_digits("9" * 20) == vocab.id_digits("³") == vocab.id_digits(False) == ""
