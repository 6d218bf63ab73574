"""Write the PDF fixtures of tests/test_pdf.py: government statements as they are published.

Run ``python tests/pdfs/make_pdfs.py`` (needs reportlab, pillow and pypdf) to
regenerate them; the PDFs are committed so the tests do not need reportlab.
Content is written for these tests (fictional country "Northland"), mirroring
the layout of real releases:

``en_press_release.pdf``  three-page English media release from a word processor:
    letterhead and "Page N of 3" footer on every page, a two-line bold headline,
    a paragraph running over a page break, a junk ``/Title`` ("Microsoft Word - ..."),
    ``/CreationDate`` one day after the printed release date, ``/Lang en-AU``.
``zh_statement.pdf``  two-page Chinese embassy statement in a CID font
    (STSong-Light, not embedded, as older Chinese PDFs are): embassy letterhead and
    "第 N 页 共 2 页" footer on every page, the date at the end of the text only,
    a correct Chinese ``/Title``, no ``/CreationDate`` but an XMP ``xmp:CreateDate``.
``en_joint_statement.pdf``  one-page statement with a good ``/Title``, a "- 1 -"
    page number, and no date anywhere but ``/CreationDate``.
``scanned_statement.pdf``  a scanner's output: one page that is only an image of
    text, no text layer, a junk ``/Title`` ("scan0001") and a ``/CreationDate``.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas as pdf_canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

HERE = Path(__file__).resolve().parent
LIBERATION = Path("/usr/share/fonts/truetype/liberation")

EN_TITLE = "Minister announces humanitarian assistance for flood-affected communities in the Pacific"
EN_HEADER = "GOVERNMENT OF NORTHLAND  ·  MINISTRY OF FOREIGN AFFAIRS AND TRADE"
EN_FOOTER = "www.mfat.northland.example  |  Media release MR-2024-031  |  Page {page} of {pages}"
EN_PARAGRAPHS = [
    "Released 14 March 2024",
    "The Minister for Foreign Affairs and Trade, the Hon. Margaret Ellison, today announced an immediate "
    "package of humanitarian assistance of 12.5 million dollars for communities affected by severe flooding "
    "in Tuvalu, Kiribati and the Solomon Islands.",
    "The package includes emergency shelter kits, clean water and sanitation supplies, and funding for local "
    "organisations that are already delivering help on the ground. A Royal Northland Air Force C-130 will "
    "depart Wellport tomorrow carrying the first consignment of relief supplies.",
    "\u201cOur Pacific neighbours are facing the worst floods in a generation, and Northland stands with them,\u201d "
    "the Minister said. \u201cWe are working closely with partner governments, the Pacific Islands Forum and the "
    "Red Cross movement to make sure assistance reaches the people who need it most.\u201d",
    "The assistance will be delivered in three phases. The first phase, beginning this week, provides "
    "emergency relief. The second phase, from April, will support the restoration of water supplies, schools "
    "and health clinics. The third phase will help communities rebuild in a way that reduces the risk of "
    "future disasters, including through climate-resilient infrastructure and early warning systems.",
    "Northland's High Commissions in Funafuti, Tarawa and Honiara are in contact with the authorities of each "
    "country and are monitoring the situation closely. Northland citizens in affected areas should follow the "
    "advice of local authorities and register their details with the Ministry's consular service.",
    "This announcement brings Northland's humanitarian funding to the Pacific to 48 million dollars over the "
    "past two years. The Government will consider further support as the needs of affected communities "
    "become clearer over the coming weeks, in close consultation with regional partners and with the "
    "communities themselves.",
    "The Minister thanked the Northland Defence Force, non-governmental organisations and the many "
    "volunteers who have offered their time and expertise, and paid tribute to the resilience of the "
    "people of the region in the face of repeated extreme weather events.",
    "Media contact: Ministry of Foreign Affairs and Trade media team, +64 4 555 0100, media@mfat.northland.example",
]
# Repeated so that the release runs over three pages and a paragraph breaks across a page.
EN_BODY_REPEAT = 3

ZH_TITLE = "驻北地国使馆发言人就近期涉华错误言论答记者问"
ZH_HEADER = "中华人民共和国驻北地国大使馆"
ZH_FOOTER = "第 {page} 页 共 {pages} 页"
ZH_PARAGRAPHS = [
    "问：近日，北地国个别政客发表涉华错误言论，对中国内政说三道四。使馆对此有何评论？",
    "答：我们注意到有关报道。有关言论罔顾事实，严重干涉中国内政，我们对此表示强烈不满和坚决反对，"
    "已向北地国方面提出严正交涉。",
    "中方始终奉行独立自主的和平外交政策，坚持在和平共处五项原则基础上同各国发展友好合作关系。"
    "中国和北地国建交以来，两国关系总体保持健康稳定发展，各领域务实合作成果丰硕，给两国人民带来了实实在在的利益。",
    "我们敦促北地国有关政客摒弃冷战思维和意识形态偏见，停止发表不负责任的言论，"
    "多做有利于增进两国互信与合作的事，而不是相反。",
    "中方愿同北地国方面一道，在相互尊重、平等互利的基础上，推动两国关系持续健康稳定向前发展。",
]
ZH_REPEAT = 3
ZH_DATE = "2024年5月20日"

JOINT_TITLE = "Joint Statement on Maritime Cooperation between Northland and Southland"
JOINT_PARAGRAPHS = [
    "The Foreign Ministers of Northland and Southland met in Port Adelie for the fourth annual "
    "Maritime Dialogue between the two countries.",
    "The Ministers reaffirmed their commitment to a peaceful, stable and prosperous maritime domain "
    "governed by international law, in particular the United Nations Convention on the Law of the Sea.",
    "They agreed to expand cooperation on fisheries enforcement, search and rescue, and the protection of "
    "the marine environment, and to hold joint coast guard exercises later this year.",
]

SCAN_LINES = [
    "MINISTRY OF FOREIGN AFFAIRS AND TRADE",
    "STATEMENT BY THE SPOKESPERSON",
    "",
    "The Ministry notes with concern the reports of",
    "renewed fighting in the northern provinces and",
    "calls on all parties to respect the ceasefire.",
]


def _fonts() -> tuple[str, str]:
    """A word processor would embed a TrueType subset: do the same when Liberation is installed."""
    regular, bold = LIBERATION / "LiberationSerif-Regular.ttf", LIBERATION / "LiberationSerif-Bold.ttf"
    if regular.is_file() and bold.is_file():
        pdfmetrics.registerFont(TTFont("Serif", str(regular)))
        pdfmetrics.registerFont(TTFont("Serif-Bold", str(bold)))
        return "Serif", "Serif-Bold"
    return "Times-Roman", "Times-Bold"


def _build(story_maker, decorate, pages_hint: int, top_margin: float = 35, **doc_kwargs) -> bytes:
    """Build twice: the first pass counts the pages for the "Page N of M" footers."""
    pages = pages_hint
    for _ in range(2):
        buffer = io.BytesIO()
        doc = SimpleDocTemplate(buffer, pagesize=A4, topMargin=top_margin * mm, bottomMargin=30 * mm,
                                leftMargin=25 * mm, rightMargin=25 * mm, **doc_kwargs)

        def on_page(canvas, document, total=pages):
            decorate(canvas, document.page, total)

        doc.build(story_maker(), onFirstPage=on_page, onLaterPages=on_page)
        pages = doc.page
    return buffer.getvalue()


def _with_metadata(pdf: bytes, info: dict, drop=(), xmp: bytes | None = None) -> bytes:
    reader = PdfReader(io.BytesIO(pdf))
    writer = PdfWriter(clone_from=reader)
    metadata = {k: v for k, v in (reader.metadata or {}).items() if k not in drop}
    metadata.update(info)
    writer.metadata = None
    writer.add_metadata(metadata)
    if xmp is not None:
        writer.xmp_metadata = xmp
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def english_release() -> bytes:
    regular, bold = _fonts()
    title_style = ParagraphStyle("title", fontName=bold, fontSize=17, leading=21, spaceAfter=10)
    body_style = ParagraphStyle("body", fontName=regular, fontSize=11, leading=15, spaceAfter=8)

    def story():
        flow = [Paragraph(EN_TITLE, title_style)]
        body = EN_PARAGRAPHS[:1] + EN_PARAGRAPHS[1:-1] * EN_BODY_REPEAT + EN_PARAGRAPHS[-1:]
        flow += [Paragraph(p, body_style) for p in body]
        return flow

    def decorate(canvas, page, pages):
        width, height = A4
        canvas.saveState()
        canvas.setFont(bold, 9)
        canvas.drawString(25 * mm, height - 15 * mm, EN_HEADER)
        canvas.setFont(regular, 9)
        canvas.drawString(25 * mm, height - 20 * mm, "MEDIA RELEASE")
        canvas.line(25 * mm, height - 23 * mm, width - 25 * mm, height - 23 * mm)
        canvas.drawCentredString(width / 2, 15 * mm, EN_FOOTER.format(page=page, pages=pages))
        canvas.restoreState()

    pdf = _build(story, decorate, 3, top_margin=44, lang="en-AU")  # a paragraph runs over page 1
    return _with_metadata(pdf, {
        "/Title": "Microsoft Word - MR-2024-031 final.docx",
        "/Author": "jsmith",
        "/Creator": "Microsoft® Word for Microsoft 365",
        "/Producer": "Microsoft® Word for Microsoft 365",
        "/CreationDate": "D:20240315093000+11'00'",
        "/ModDate": "D:20240315093000+11'00'",
    })


def chinese_statement() -> bytes:
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    title_style = ParagraphStyle("title", fontName="STSong-Light", fontSize=18, leading=26, alignment=1,
                                 spaceAfter=14, wordWrap="CJK")
    body_style = ParagraphStyle("body", fontName="STSong-Light", fontSize=12, leading=20, firstLineIndent=24,
                                spaceAfter=6, wordWrap="CJK")
    date_style = ParagraphStyle("date", parent=body_style, alignment=2, firstLineIndent=0, spaceBefore=12)

    def story():
        flow = [Paragraph(ZH_TITLE, title_style)]
        flow += [Paragraph(p, body_style) for p in ZH_PARAGRAPHS[:1] + ZH_PARAGRAPHS[1:] * ZH_REPEAT]
        flow += [Spacer(1, 6 * mm), Paragraph(ZH_DATE, date_style)]
        return flow

    def decorate(canvas, page, pages):
        width, height = A4
        canvas.saveState()
        canvas.setFont("STSong-Light", 10)
        canvas.drawCentredString(width / 2, height - 18 * mm, ZH_HEADER)
        canvas.line(25 * mm, height - 21 * mm, width - 25 * mm, height - 21 * mm)
        canvas.drawCentredString(width / 2, 15 * mm, ZH_FOOTER.format(page=page, pages=pages))
        canvas.restoreState()

    pdf = _build(story, decorate, 2, top_margin=53, lang="zh-CN")  # a paragraph runs over page 1
    xmp = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<xmp:CreateDate>2024-05-20T16:30:00+08:00</xmp:CreateDate>"
        "<xmp:CreatorTool>WPS Office</xmp:CreatorTool>"
        f'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{ZH_TITLE}</rdf:li></rdf:Alt></dc:title>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    ).encode()
    return _with_metadata(pdf, {"/Title": ZH_TITLE, "/Creator": "WPS Office"},
                          drop=("/CreationDate", "/ModDate"), xmp=xmp)


def joint_statement() -> bytes:
    regular, bold = _fonts()
    title_style = ParagraphStyle("title", fontName=bold, fontSize=15, leading=19, alignment=1, spaceAfter=12)
    body_style = ParagraphStyle("body", fontName=regular, fontSize=11, leading=15, spaceAfter=8)

    def story():
        return [Paragraph(JOINT_TITLE, title_style)] + [Paragraph(p, body_style) for p in JOINT_PARAGRAPHS]

    def decorate(canvas, page, pages):
        canvas.saveState()
        canvas.setFont(regular, 10)
        canvas.drawCentredString(A4[0] / 2, 15 * mm, f"- {page} -")
        canvas.restoreState()

    pdf = _build(story, decorate, 1)
    return _with_metadata(pdf, {"/Title": JOINT_TITLE, "/CreationDate": "D:20230911140000Z",
                                "/Producer": "Adobe PDF Library 15.0"}, drop=("/ModDate",))


def scanned_statement() -> bytes:
    image = Image.new("L", (1240, 1754), 250)  # A4 at 150 dpi, greyish paper
    draw = ImageDraw.Draw(image)
    y = 160
    for line in SCAN_LINES:
        draw.text((140, y), line, fill=20)
        y += 60
    for row in range(12):  # body text as a scanner sees it: dark strokes, no characters
        draw.rectangle((140, 600 + row * 45, 1100 - (row % 3) * 90, 618 + row * 45), fill=60)
    page = io.BytesIO()
    image.save(page, format="PNG")
    buffer = io.BytesIO()
    canvas = pdf_canvas.Canvas(buffer, pagesize=A4, invariant=1)
    canvas.drawImage(ImageReader(io.BytesIO(page.getvalue())), 0, 0, width=A4[0], height=A4[1])
    canvas.setCreator("Canon iR-ADV C5535")
    canvas.setTitle("scan0001")
    canvas.showPage()
    canvas.save()
    return _with_metadata(buffer.getvalue(), {"/CreationDate": "D:20220407101500+02'00'",
                                              "/ModDate": "D:20220407101500+02'00'"})


FIXTURES = {
    "en_press_release.pdf": english_release,
    "zh_statement.pdf": chinese_statement,
    "en_joint_statement.pdf": joint_statement,
    "scanned_statement.pdf": scanned_statement,
}


def main() -> None:
    for name, make in FIXTURES.items():
        data = make()
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data):,} bytes, {len(PdfReader(io.BytesIO(data)).pages)} pages")


if __name__ == "__main__":
    main()
