"""The source registry: the bundled catalogue loads, and every kind of broken
registry stops with one line naming the file, the source and the key."""

import textwrap

import pytest
from click.testing import CliRunner

from crawler.cli import cli
from crawler.sources import Source, SourceError, load_sources, select_sources

GOOD = """
[[sources]]
id = "demo-a"
name = "Demo A"
country = "CA"
kind = "government"
languages = ["en"]
feeds = ["http://127.0.0.1:8000/feed.xml"]
article_pattern = '/news/\\d{4}/'
delay = 0
"""


def write(tmp_path, text, name="sources.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_bundled_catalogue_has_the_origin_story_sources():
    sources = {s.id: s for s in load_sources()}
    assert len(sources) >= 6
    for needed in ("cn-embassy-ca-en", "cn-embassy-ca-zh", "ca-pm", "ca-gac"):
        assert needed in sources
    assert sources["ca-pm"].feeds == ["https://www.pm.gc.ca/en/news.rss"]
    assert sources["cn-embassy-ca-zh"].languages == ["zh"]
    assert all(s.delay >= 1 for s in sources.values()), "real sources must be crawled politely"
    assert sources["cn-embassy-ca-en"].article_re.search(
        "https://ca.china-embassy.gov.cn/eng/sgxw/201706/t20170623_1234567.htm"
    )


def test_defaults_fill_in(tmp_path):
    (source,) = load_sources(write(tmp_path, GOOD.replace("delay = 0\n", "")))
    assert source.allowed_domains == ["127.0.0.1"]
    assert source.delay == 2.0
    assert source.sitemaps == [] and source.listings == []
    assert source.allows("http://127.0.0.1:9999/news/2017/x.html")
    assert not source.allows("http://localhost:8000/news/2017/x.html")


BROKEN = [
    ("unknown key", GOOD + 'colour = "red"\n', "source 'demo-a': key 'colour': unknown key"),
    ("missing key", GOOD.replace('name = "Demo A"\n', ""), "source 'demo-a': key 'name': missing required key"),
    ("bad regex", GOOD.replace("'/news/\\d{4}/'", "'/news/(['"), "source 'demo-a': key 'article_pattern': bad regular expression"),
    ("bad url", GOOD.replace("http://127.0.0.1:8000/feed.xml", "ftp://example.org/feed"), "source 'demo-a': key 'feeds': 'ftp://example.org/feed' is not an absolute http(s) URL"),
    ("relative url", GOOD.replace("http://127.0.0.1:8000/feed.xml", "/feed.xml"), "key 'feeds'"),
    ("bad kind", GOOD.replace('"government"', '"ministry"'), "source 'demo-a': key 'kind': expected one of"),
    ("bad country", GOOD.replace('"CA"', '"Canada"'), "source 'demo-a': key 'country'"),
    ("bad language", GOOD.replace('["en"]', '["english!"]'), "source 'demo-a': key 'languages'"),
    ("wrong type", GOOD.replace('languages = ["en"]', 'languages = "en"'), "source 'demo-a': key 'languages': expected a list, got str"),
    ("negative delay", GOOD.replace("delay = 0", "delay = -1"), "source 'demo-a': key 'delay': must be >= 0"),
    ("no start urls", GOOD.replace('feeds = ["http://127.0.0.1:8000/feed.xml"]\n', ""), "source 'demo-a': key 'listings': a source needs at least one URL"),
    ("domains miss start url", GOOD + 'allowed_domains = ["example.org"]\n', "source 'demo-a': key 'allowed_domains': does not cover"),
    ("duplicate id", GOOD + GOOD, "source 'demo-a': key 'id': duplicate id"),
    ("toml syntax", GOOD + "[[sources]\n", "TOML syntax error"),
    ("no sources", "title = 'x'\n", "unknown top-level key 'title'"),
]


@pytest.mark.parametrize("label, text, expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_registry_names_file_source_and_key(tmp_path, label, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(SourceError) as info:
        load_sources(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize("label, text, expected", BROKEN[:4], ids=[b[0] for b in BROKEN[:4]])
def test_cli_reports_broken_registry_in_one_line_exit_2(tmp_path, label, text, expected):
    path = write(tmp_path, text)
    for command in (["sources"], ["crawl", "--db", str(tmp_path / "a.db")]):
        result = CliRunner().invoke(cli, command + ["--sources", str(path)])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1, result.output
        assert lines[0].startswith(f"Error: {path}: ")
        assert expected in lines[0]
        assert "Traceback" not in result.output
    assert not (tmp_path / "a.db").exists(), "a broken registry must stop before anything is written"


def test_missing_file_and_unknown_id(tmp_path):
    result = CliRunner().invoke(cli, ["sources", "--sources", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "nope.toml: file not found" in result.output
    path = write(tmp_path, GOOD)
    result = CliRunner().invoke(cli, ["crawl", "nosuch", "--sources", str(path)])
    assert result.exit_code == 2
    assert "unknown source id 'nosuch'" in result.output
    with pytest.raises(SourceError):
        select_sources(load_sources(path), ["nosuch"])


def test_sources_command_lists_catalogue():
    result = CliRunner().invoke(cli, ["sources"])
    assert result.exit_code == 0, result.output
    assert "cn-embassy-ca-zh" in result.output and "中华人民共和国驻加拿大大使馆" in result.output
    assert "[disabled]" in result.output


def test_article_exclude_leaves_out_what_a_lookahead_did(tmp_path):
    """RE2 has no lookahead: `article_exclude` says which URLs matching article_pattern are not releases."""
    text = GOOD.replace("'/news/\\d{4}/'", "'^http://127.0.0.1:8000/[a-z0-9-]+/$'") + \
        "article_exclude = '^http://127.0.0.1:8000/(category/|tag/|wp-)'\n"
    (source,) = load_sources(write(tmp_path, text))
    assert source.article_re.search("http://127.0.0.1:8000/minister-meets-counterpart/")
    for url in ("http://127.0.0.1:8000/category/", "http://127.0.0.1:8000/tag/", "http://127.0.0.1:8000/wp-admin/"):
        assert source.article_re.search(url) is None
    assert Source.from_row(source.as_row()) == source
    (plain,) = load_sources(write(tmp_path, GOOD))
    assert plain.as_row()["article_exclude"] is None and Source.from_row(plain.as_row()) == plain


def test_demo_registry_validates(tmp_path):
    from crawler.demo.server import DEMO_SOURCES

    text = DEMO_SOURCES.read_text(encoding="utf-8")
    for name in ("gov", "embassy"):
        text = text.replace(f"{{base_{name}}}", "http://127.0.0.1:8000")
    sources = load_sources(write(tmp_path, text))
    assert [s.id for s in sources] == ["demo-gac", "demo-cn-embassy-en", "demo-cn-embassy-zh"]
    assert all(s.article_re.search("http://127.0.0.1:8000/" + "a" * 40 + "!") is None for s in sources)
