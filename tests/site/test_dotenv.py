"""`.env` lines as people write them (reeve_site/dotenv.py); the process-level test is in
tests/api/test_trust_boundary.py."""

import pytest

from reeve_site.dotenv import DotenvError, read_dotenv


def test_comments_quotes_and_hashes_inside_words(tmp_path):
    path = tmp_path / ".env"
    path.write_text(
        "# a comment line\n"
        "\n"
        "PULSE_MAX_CONCURRENT=1   # Max concurrent pulses\n"
        "export TIME_ZONE=UTC\n"
        "DATABASE_URL=postgres://u:p#w@h/db\n"
        "SINGLE='keeps # this'  # but not this\n"
        'DOUBLE="line\\none \\"quoted\\""\n'
        "EMPTY=\n"
        "ONLY_COMMENT= # nothing\n"
        "SPACED = value\n"
    )
    assert read_dotenv(path) == {
        "PULSE_MAX_CONCURRENT": "1",
        "TIME_ZONE": "UTC",
        "DATABASE_URL": "postgres://u:p#w@h/db",
        "SINGLE": "keeps # this",
        "DOUBLE": 'line\none "quoted"',
        "EMPTY": "",
        "ONLY_COMMENT": "",
        "SPACED": "value",
    }


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("TOKEN='unclosed", "not closed"),
        ('TOKEN="a" b', "after the closing"),
        ("just words", "expected KEY=VALUE"),
        ("1KEY=x", "expected KEY=VALUE"),
    ],
)
def test_a_line_that_cannot_be_read_is_named(tmp_path, line, says):
    path = tmp_path / ".env"
    path.write_text(f"OK=1\n{line}\n")
    with pytest.raises(DotenvError, match=says) as error:
        read_dotenv(path)
    assert f"{path}, line 2" in str(error.value)
