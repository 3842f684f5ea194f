"""File names made from external ids stay inside their folder and never collide."""

from __future__ import annotations

import pytest

from sodakit.fileio import is_plain_file_name, path_inside, safe_file_name


@pytest.mark.parametrize(
    ("item_id", "name"),
    [
        ("common_voice_en_1-common_voice_en_2", "common_voice_en_1-common_voice_en_2.wav"),
        ("../../../PWNED", "%2E.%2F..%2F..%2FPWNED.wav"),
        ("a/b\\c", "a%2Fb%5Cc.wav"),
        ("..", "%2E..wav"),
        (".hidden", "%2Ehidden.wav"),
        ("50%", "50%25.wav"),
        ("naïve id", "na%C3%AFve%20id.wav"),
        ("nul\0byte", "nul%00byte.wav"),
    ],
)
def test_safe_file_name(item_id, name):
    assert safe_file_name(item_id, ".wav") == name
    assert is_plain_file_name(name) and not name.startswith(".")


def test_distinct_ids_give_distinct_names_and_long_ids_are_cut():
    ids = ["a/b", "a%2Fb", "a_b", ".x", "%2Ex", "x" * 400, "x" * 399 + "y"]
    names = [safe_file_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert max(len(n.encode()) for n in names) <= 200
    with pytest.raises(ValueError, match="empty id"):
        safe_file_name("")


def test_path_inside(tmp_path):
    out = tmp_path / "out"
    for item_id in ("../../x", "/etc/passwd", "..", "a/../../b"):
        p = path_inside(out, item_id, ".wav")
        assert p.parent == out and p.resolve().parent == out.resolve()


@pytest.mark.parametrize(("name", "plain"), [("84-121-0000", True), ("../x", False), ("a/b", False), ("..", False),
                                             (".", False), ("", False), ("a\\b", False)])
def test_is_plain_file_name(name, plain):
    assert is_plain_file_name(name) is plain
