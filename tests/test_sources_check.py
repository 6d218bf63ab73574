"""`pressarchive sources check`: the live check, run offline against the fixture sites."""

from conftest import run_cli


def run(args, cwd):
    return run_cli(args, cwd)


def test_check_reports_each_source_and_fails_on_broken_ones(tmp_path, fixture_sources, fixture_servers, expected):
    broken = fixture_sources.read_text() + f"""
[[sources]]
id = "redesigned"
name = "A site whose release URLs changed"
country = "CA"
kind = "government"
languages = ["en"]
feeds = ["{fixture_servers['feed_site'].base_url}/en/news.rss"]
article_pattern = '/en/old-news/\\d{{4}}/'
delay = 0

[[sources]]
id = "gone"
name = "Unreachable"
country = "CA"
kind = "government"
languages = ["en"]
listings = ["http://127.0.0.1:9/news/"]
article_pattern = '/news/'
delay = 0
"""
    (tmp_path / "all.toml").write_text(broken)
    result = run(["sources", "check", "--sources", str(tmp_path / "all.toml")], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line and not line.startswith(" ")}
    for source_id in ("fixture-feed", "fixture-sitemap", "fixture-listing", "fixture-gbk"):
        assert " OK " in lines[source_id], result.stdout
        assert "sample: '" in lines[source_id] and "chars)" in lines[source_id]
    feed_titles = {r["title"] for r in expected["feed_site"]["releases"]}
    assert any(title in lines["fixture-feed"] for title in feed_titles)
    assert "newest 2017-" in lines["fixture-feed"]
    assert "BROKEN" in lines["redesigned"] and "no release links found" in result.stdout
    assert "BROKEN" in lines["gone"]
    assert "6 sources checked, 2 broken" in result.stderr
    # One sample per source, never the whole site, and nothing written where the user runs it.
    releases = [p for p in fixture_servers["listing_site"].paths if p.startswith("/government/news/")]
    assert len(releases) == 1
    assert not (tmp_path / "archive.db").exists()


def test_check_one_source_ok(tmp_path, fixture_sources):
    result = run(["sources", "check", "fixture-gbk", "--sources", str(fixture_sources)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert result.stdout.startswith("fixture-gbk") and " OK " in result.stdout
    assert "1 sources checked, 0 broken" in result.stderr
