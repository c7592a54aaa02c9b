"""License keys: shape, alphabet, randomness source, and the helpers around them."""

from __future__ import annotations

import re

from gateway.licenses.keys import ALPHABET, generate_key, mask_key, normalize_key

KEY_RE = re.compile(rf"^[{ALPHABET}]{{4}}(-[{ALPHABET}]{{4}}){{3}}$")


def test_alphabet_has_no_look_alike_characters() -> None:
    assert not set("0O1IL") & set(ALPHABET)
    assert len(set(ALPHABET)) == len(ALPHABET) == 31


def test_generated_keys_have_four_groups_of_four_from_the_alphabet() -> None:
    for _ in range(200):
        assert KEY_RE.match(generate_key())


def test_ten_thousand_keys_are_all_distinct_and_use_the_whole_alphabet() -> None:
    keys = {generate_key() for _ in range(10_000)}
    assert len(keys) == 10_000
    assert set("".join(keys).replace("-", "")) == set(ALPHABET)


def test_normalize_key_accepts_what_a_human_types() -> None:
    assert normalize_key(" abcd efgh-jkmn pqrs ") == "ABCD-EFGH-JKMN-PQRS"
    assert normalize_key("ABCDEFGHJKMNPQRS") == "ABCD-EFGH-JKMN-PQRS"


def test_mask_key_never_shows_the_middle_groups() -> None:
    assert mask_key("ABCD-EFGH-JKMN-PQRS") == "ABCD-****-****-PQRS"
    assert mask_key("short") == "****"
