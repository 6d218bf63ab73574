"""Unit tests for pipelines.encoding: which codec decode_html picks, and the notes it leaves.

``tests/test_extraction.py`` covers an undeclared GBK page, a UTF-8 page declaring
gb2312 in ``<meta>``, ``<meta charset=gb2312>`` on GBK bytes, an HTTP ISO-8859-1
charset and a UTF-8 BOM; ``tests/test_operators.py`` a GBK page with a UTF-8
paragraph and stray bytes. Here: the rest of the decision order in the module
docstring, one step at a time, on real bytes.
"""

from __future__ import annotations

import codecs
import logging

import pytest

from pipelines.encoding import (
    DECLARATION_WINDOW,
    MIN_UTF8_RUN,
    DecodeNote,
    declared_charset,
    decode_html,
    decode_notes,
    normalise_codec,
    utf8_passages,
)

LATIN = "<p>Déclaration du ministère sur la coopération économique. Grüße, señor.</p>"


def decoded(body: bytes, http_charset: str | None = None) -> tuple[str, str, list[DecodeNote]]:
    with decode_notes() as notes:
        text, codec = decode_html(body, http_charset)
    return text, codec, notes


# --- 1. byte-order marks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bom, codec, expected",
    [
        (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
        # FF FE 00 00 starts with the UTF-16 LE mark: UTF-32 must be tried first.
        (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
        (codecs.BOM_UTF8, "utf-8", "utf-8"),
    ],
)
def test_byte_order_mark_decides_over_every_declaration(bom, codec, expected):
    page = '<meta charset="gb2312"><p>外交部声明 déclaration</p>'
    assert decoded(bom + page.encode(codec), http_charset="iso-8859-1") == (page, expected, [])


def test_bom_page_with_a_stray_byte_is_repaired_and_noted():
    body = codecs.BOM_UTF8 + b"<p>caf\xe9 \xe5\xa4\x96\xe4\xba\xa4</p>"
    assert decoded(body) == ("<p>caf\ufffd 外交</p>", "utf-8", [DecodeNote("utf-8", replaced=1)])


# --- 2. valid UTF-8 wins over any declaration -------------------------------------------------------


@pytest.mark.parametrize("http_charset", ["gb2312", "GBK", "iso-8859-1", "windows-1251", "shift_jis"])
def test_valid_utf8_wins_over_a_wrong_http_charset(http_charset):
    page = '<meta charset="gb2312"><p>中华人民共和国外交部 — “声明”</p>'
    assert decoded(page.encode("utf-8"), http_charset) == (page, "utf-8", [])


# --- 3-4. HTTP charset, then <meta> -----------------------------------------------------------------


RUSSIAN = "<p>Заявление Министерства иностранных дел Российской Федерации</p>"


def test_http_charset_beats_the_meta_declaration():
    body = ('<meta charset="koi8-r">' + RUSSIAN).encode("cp1251")
    assert decoded(body, http_charset="windows-1251") == ('<meta charset="koi8-r">' + RUSSIAN, "cp1251", [])


@pytest.mark.parametrize("http_charset", [None, "", "no-such-charset", "utf-8"])
def test_meta_declaration_when_http_gives_none_an_unknown_one_or_one_that_fails(http_charset):
    # GBK bytes are not valid UTF-8, so an HTTP "utf-8" fails and <meta> decides.
    page = '<meta http-equiv="Content-Type" content="text/html; charset=GBK"><p>朱镕基总理会见外宾</p>'
    assert decoded(page.encode("gbk"), http_charset) == (page, "gb18030", [])


# --- 5. pure ASCII ------------------------------------------------------------------------------------


def test_pure_ascii():
    assert decoded(b"<p>Statement</p>") == ("<p>Statement</p>", "utf-8", [])
    assert decoded(b"<p>Statement</p>", "Shift_JIS") == ("<p>Statement</p>", "cp932", [])
    # A <meta> naming UTF-16 was read as ASCII, so it is not UTF-16 (WHATWG): read as UTF-8.
    assert decoded(b'<meta charset="utf-16"><p>Statement</p>') == ('<meta charset="utf-16"><p>Statement</p>',
                                                                   "utf-8", [])


# --- declared labels widened as browsers do -------------------------------------------------------------


@pytest.mark.parametrize(
    "label, codec",
    [
        ("gb2312", "gb18030"), ("GB2312", "gb18030"), ("gbk", "gb18030"), ("x-gbk", "gb18030"),
        ("cp936", "gb18030"), ("gb_2312-80", "gb18030"), ("GB18030", "gb18030"),
        ("iso-8859-1", "cp1252"), ("ISO-8859-1", "cp1252"), ("latin1", "cp1252"), ("latin-1", "cp1252"),
        ("us-ascii", "cp1252"), ("ascii", "cp1252"), ("windows-1252", "cp1252"),
        ("big5", "big5hkscs"), ("shift_jis", "cp932"), ("sjis", "cp932"), ("euc-kr", "cp949"),
        ("utf8", "utf-8"), ("UTF-8", "utf-8"), (' "utf-8" ', "utf-8"), ("'koi8-r'", "koi8-r"),
        ("no-such-charset", None), ("", None), (None, None),
    ],
)
def test_normalise_codec(label, codec):
    assert normalise_codec(label) == codec


@pytest.mark.parametrize("label", ["iso8859-1", "ISO_8859-1", "l1", "cp819"])
def test_every_latin1_label_reads_as_cp1252(label):
    assert normalise_codec(label) == "cp1252"
    assert decode_html(b"<p>\x93Quote\x94 \x80 5</p>", http_charset=label) == ("<p>“Quote” € 5</p>", "cp1252")


def test_latin1_declaration_reads_cp1252_characters():
    body = "<p>“Quoted” — 5 € ‘here’ Grüße</p>".encode("cp1252")
    assert decoded(body, http_charset="ISO-8859-1") == ("<p>“Quoted” — 5 € ‘here’ Grüße</p>", "cp1252", [])
    meta = b'<meta charset="iso-8859-1">' + body
    assert decoded(meta)[:2] == ('<meta charset="iso-8859-1"><p>“Quoted” — 5 € ‘here’ Grüße</p>', "cp1252")


@pytest.mark.parametrize(
    "label, text, codec",
    [
        # 镕 is GBK, not GB2312; 𠀀 (4 bytes) and ᠠ only GB18030
        ("gb2312", "朱镕基总理会见外宾 𠀀 ᠠ", "gb18030"),
        ("big5", "香港特別行政區政府嘅新聞公報", "big5hkscs"),  # 嘅: HKSCS only
        ("shift_jis", "外務省報道発表①髙橋大臣", "cp932"),  # ① 髙: Microsoft's Shift_JIS only
        ("euc-kr", "대한민국 외교부 똠방각하 보도자료", "cp949"),  # 똠: in cp949 as two bytes only
    ],
)
def test_declared_cjk_codecs_are_read_with_their_wider_superset(label, text, codec):
    page = f'<meta charset="{label}"><p>{text}</p>'
    body = page.encode(codec)
    with pytest.raises(UnicodeDecodeError):
        body.decode(label)  # the narrow codec itself would fail
    assert decoded(body) == (page, codec, [])
    assert decoded(f"<p>{text}</p>".encode(codec), http_charset=label) == (f"<p>{text}</p>", codec, [])


def test_declared_charset_forms_and_window():
    assert declared_charset(b'<meta charset="GB2312">') == "gb18030"
    assert declared_charset(b"<META CHARSET=big5>") == "big5hkscs"
    assert declared_charset(b'<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">') == "cp1252"
    assert declared_charset(b'<meta charset="utf-16le">') == "utf-8"
    assert declared_charset(b'<meta charset="klingon">') is None
    assert declared_charset(b"<p>no declaration</p>") is None
    padding = b"<!-- " + b"x" * DECLARATION_WINDOW + b" -->"
    assert declared_charset(padding + b'<meta charset="gbk">') is None


# --- 6. nearly UTF-8 ------------------------------------------------------------------------------------


def test_utf8_with_a_few_stray_bytes_is_utf8_with_replacements():
    body = (LATIN * 20).encode("utf-8")
    assert len(body) > 1000
    broken = body[:100] + b"\xff" + body[100:]
    text, codec, notes = decoded(broken)
    assert codec == "utf-8"
    assert text.count("\ufffd") == 1 and text.replace("\ufffd", "", 1) == LATIN * 20
    assert notes == [DecodeNote("utf-8", replaced=1)]


def test_utf8_with_more_than_a_tenth_of_a_percent_bad_bytes_is_not_read_as_utf8():
    body = LATIN.encode("utf-8")  # under 100 bytes: one bad byte is already over 0.1%
    assert decoded(body[:20] + b"\xff" + body[20:])[1] != "utf-8"


def test_declared_single_byte_codec_with_a_stray_undefined_byte():
    # 0x81 is undefined in cp1252: the declared codec is kept, the byte replaced and noted.
    page = ('<meta charset="windows-1252"><p>' + "Grüße aus Berlin, die Erklärung. " * 40 + "</p>").encode("cp1252")
    text, codec, notes = decoded(page[:60] + b"\x81" + page[60:])
    assert codec == "cp1252" and text.count("\ufffd") == 1 and "Grüße aus Berlin" in text
    assert notes == [DecodeNote("cp1252", replaced=1)]


# --- mixed CJK pages ----------------------------------------------------------------------------------


def test_utf8_passage_in_a_big5_page():
    page = "<meta charset=big5><p>{}</p><p>{}</p>"
    big5, utf8 = "中華民國外交部新聞稿", "共同維護地區和平穩定"
    body = page.format(big5, "").encode("big5").replace(b"<p></p>", b"<p>" + utf8.encode("utf-8") + b"</p>")
    assert decoded(body) == (page.format(big5, utf8), "big5hkscs", [DecodeNote("big5hkscs", utf8_bytes=30)])


def test_utf8_passages_need_a_run_of_wide_characters_and_extend_around_it():
    assert MIN_UTF8_RUN == 4
    assert utf8_passages(b"ab" + "中文字".encode() + b"cd") == []  # 3 in a row: could be chance
    assert utf8_passages(b"ab" + "中文字符".encode() + b"cd") == [(2, 14)]
    assert utf8_passages(b"ab" + "中文 字符".encode() + b"cd") == []  # not in a row
    # The passage stretches over the ASCII and UTF-8 characters around the run, up to the last wide one.
    passage = "中文字符, Déclaration 外交部".encode()
    body = b"<p>" + passage + b"</p>" + "中".encode("gbk")
    assert utf8_passages(body) == [(3, 3 + len(passage))]
    assert utf8_passages("中文字符".encode("gbk") * 10) == []


def test_a_short_utf8_run_in_a_gbk_page_stays_gbk():
    body = "<meta charset=gb2312><p>中华人民共和国</p>".encode("gbk") + "<p>中文字</p>".encode()
    text, codec, notes = decoded(body)
    # Read as GB18030 (nonsense Han, its ninth byte cut in half), never as a UTF-8 passage.
    assert codec == "gb18030" and notes == [DecodeNote("gb18030", replaced=1)]
    assert text.startswith("<meta charset=gb2312><p>中华人民共和国</p>") and "中文字" not in text


# --- 9. undecodable junk ---------------------------------------------------------------------------


def test_undecodable_junk_is_replaced_counted_and_never_raises():
    body = b"\x81\x30\xff\xfe\x80" * 50
    text, codec, notes = decoded(body)
    assert codec == "cp1252"
    assert text.count("\ufffd") == 50 and len(text) == len(body)
    assert notes == [DecodeNote("cp1252", replaced=50)]


def test_empty_body():
    assert decoded(b"") == ("", "utf-8", [])


# --- notes ------------------------------------------------------------------------------------------


def test_note_wording():
    assert str(DecodeNote("utf-8", replaced=1)) == "decoded as utf-8 with 1 undecodable byte replaced with U+FFFD"
    assert str(DecodeNote("cp1252", replaced=2)) == "decoded as cp1252 with 2 undecodable bytes replaced with U+FFFD"
    assert str(DecodeNote("gb18030", replaced=3, utf8_bytes=30)) == (
        "decoded as gb18030 with 3 undecodable bytes replaced with U+FFFD and 30 bytes of UTF-8 passages read as UTF-8")
    assert str(DecodeNote("big5hkscs", utf8_bytes=12)) == "decoded as big5hkscs with 12 bytes of UTF-8 passages read as UTF-8"


def test_notes_go_to_the_innermost_block_else_to_the_log(caplog):
    broken = codecs.BOM_UTF8 + b"<p>caf\xe9</p>"
    with decode_notes() as outer:
        with decode_notes() as inner:
            decode_html(broken)
        decode_html(broken + b"\xff")
    assert inner == [DecodeNote("utf-8", replaced=1)] and outer == [DecodeNote("utf-8", replaced=2)]
    with caplog.at_level(logging.WARNING, logger="pipelines.encoding"):
        decode_html(broken)
        decode_html(b"<p>clean</p>")
    logged = [r.getMessage() for r in caplog.records]
    assert logged == ["page decoded as utf-8 with 1 undecodable byte replaced with U+FFFD"]
