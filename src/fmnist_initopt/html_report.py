"""results/findings.html: findings.md as one self-contained HTML page for Snakemake's report.

Snakemake's report shows images, HTML and PDF in the page but offers Markdown only as a download,
whose relative figure links break once downloaded. So the Markdown is converted to HTML and every
local file it links is embedded as a base64 data URI: figures show in place, tables download, and
the page needs nothing beside it. It converts whatever Markdown it is given; nothing in it knows
what the findings say.

The report shows an HTML item in an iframe whose address is the whole file as a base64 data URI,
and Chromium loads no address longer than 2 MiB: a bigger page shows blank there. So when the page
with the figures as drawn is too big, the figures are embedded with 256 colours (plots use few)
and, if that is not enough, smaller, and the page says so.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import mimetypes
import xml.etree.ElementTree as etree
from collections.abc import Callable
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor
from PIL import Image, UnidentifiedImageError

log = logging.getLogger("fmnist-initopt")

# Tables: the findings' summaries are pipe tables. toc: headings get ids, so in-page links work.
MARKDOWN_EXTENSIONS = ["tables", "toc", "fenced_code"]

# Chromium's longest URL; Snakemake's data URI prefix (data:text/html;...;filename=...;base64,) is
# well under the allowance, and base64 turns every 3 bytes into 4 characters.
REPORT_URL_LIMIT = 2 * 1024 * 1024
PREFIX_ALLOWANCE = 512
MAX_PAGE_BYTES = (REPORT_URL_LIMIT - PREFIX_ALLOWANCE) // 4 * 3
# Scales tried, in order, for figures reduced to 256 colours when the page is too big as drawn.
SHRINK_SCALES = (1.0, 0.75, 0.5, 0.35, 0.25)

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; background: #fff;
       max-width: 72rem; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1, h2, h3 { line-height: 1.25; margin-top: 1.8em; }
h1 { margin-top: 0.5em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.3em; }
h2 { border-bottom: 1px solid #eaeef2; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: 1.5em 0; }
figure img, p img { max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: #57606a; margin-top: 0.3em; }
code { background: #f6f8fa; padding: 0.1em 0.3em; border-radius: 4px; font-size: 90%; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; }
.reduced { font-size: 13px; color: #57606a; border-left: 3px solid #d0d7de; padding-left: 0.8em; }
"""


class MissingFigureError(FileNotFoundError):
    """An image the Markdown shows is not on disk, so the page cannot be self-contained."""


def data_uri(content: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode('ascii')}"


def file_uri(path: Path) -> str:
    return data_uri(path.read_bytes(), mimetypes.guess_type(path.name)[0] or "application/octet-stream")


def reduced_image_uri(path: Path, scale: float) -> str:
    """The image with 256 colours at `scale` of its size, as a PNG data URI; a file Pillow cannot
    read (an SVG, say) is embedded as it is."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if scale < 1:
                size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                image = image.resize(size, Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            image.quantize(colors=256).save(buffer, format="PNG", optimize=True)
    except UnidentifiedImageError:
        return file_uri(path)
    return data_uri(buffer.getvalue(), "image/png")


def local_target(reference: str | None, base_dir: Path) -> Path | None:
    """The file a relative link or image source points to; None for URLs, anchors and data URIs."""
    if not reference:
        return None
    parts = urlsplit(reference)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    return base_dir / unquote(parts.path)


class EmbedLocalFiles(Treeprocessor):
    """Images become data URIs (a missing one is an error); links to local files become downloads;
    a paragraph that holds only an image becomes a figure captioned with its alt text."""

    def __init__(self, md: markdown.Markdown, base_dir: Path, image_uri: Callable[[Path], str]):
        super().__init__(md)
        self.base_dir = base_dir
        self.image_uri = image_uri

    def run(self, root: etree.Element) -> None:
        for image in root.iter("img"):
            target = local_target(image.get("src"), self.base_dir)
            if target is None:
                continue
            if not target.is_file():
                raise MissingFigureError(
                    f"the Markdown shows {image.get('src')!r}, but {target} does not exist: "
                    "draw the figure first (it must be an input of the rule that renders the page)"
                )
            image.set("src", self.image_uri(target))
        for link in root.iter("a"):
            target = local_target(link.get("href"), self.base_dir)
            if target is not None and target.is_file():
                link.set("href", file_uri(target))
                link.set("download", target.name)
        for paragraph in list(root.iter("p")):
            children = list(paragraph)
            alone = len(children) == 1 and children[0].tag == "img"
            if alone and not (paragraph.text or "").strip() and not (children[0].tail or "").strip():
                paragraph.tag = "figure"
                caption = etree.SubElement(paragraph, "figcaption")
                caption.text = children[0].get("alt", "")


class EmbedLocalFilesExtension(Extension):
    def __init__(self, base_dir: Path, image_uri: Callable[[Path], str]):
        super().__init__()
        self.base_dir = base_dir
        self.image_uri = image_uri

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (Python-Markdown's name)
        # After "inline" (which makes the img and a elements), before "prettify".
        md.treeprocessors.register(EmbedLocalFiles(md, self.base_dir, self.image_uri), "embed_local_files", 15)


def markdown_to_html(text: str, base_dir: Path, image_uri: Callable[[Path], str] = file_uri) -> tuple[str, str]:
    """(title, body HTML) of a Markdown document whose relative links resolve against `base_dir`;
    `image_uri(path)` embeds each image. The title is the first level-1 heading's text, or
    'Findings' when there is none."""
    converter = markdown.Markdown(
        extensions=[*MARKDOWN_EXTENSIONS, EmbedLocalFilesExtension(Path(base_dir), image_uri)],
        output_format="html",
    )
    body = converter.convert(text)
    title = next((token["name"] for token in converter.toc_tokens if token["level"] == 1), "Findings")
    return html.unescape(title), body


def html_page(text: str, base_dir: Path, max_bytes: int = MAX_PAGE_BYTES) -> str:
    """A whole, self-contained HTML page of the Markdown `text`: with the figures as drawn when that
    fits in `max_bytes` (the report's limit by default), else with the largest reduced figures that do."""
    page = page_with_images(text, base_dir, file_uri)
    for scale in SHRINK_SCALES:
        if len(page.encode("utf-8")) <= max_bytes:
            return page
        log.info("page over %d bytes: embedding the figures with 256 colours at %.0f%% size", max_bytes, 100 * scale)
        page = page_with_images(text, base_dir, partial(reduced_image_uri, scale=scale), reduced_note(scale))
    if len(page.encode("utf-8")) > max_bytes:
        log.warning(
            "the page is %d bytes even with the smallest figures, over the %d that Snakemake's report can show: "
            "it reads as a file of its own, but shows blank inside report.html",
            len(page.encode("utf-8")),
            max_bytes,
        )
    return page


def reduced_note(scale: float) -> str:
    return (
        f'<p class="reduced">The figures on this page are reduced (256 colours, {scale:.0%} of their size) so '
        f"that the page stays within the {REPORT_URL_LIMIT // 2**20} MiB that Snakemake's HTML report can display; "
        "the figure files themselves are full size.</p>\n"
    )


def page_with_images(text: str, base_dir: Path, image_uri: Callable[[Path], str], note: str = "") -> str:
    title, body = markdown_to_html(text, base_dir, image_uri)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{note}{body}\n</body>\n</html>\n"
    )


def markdown_file_to_html(source: str | Path) -> str:
    """The page for a Markdown file, its relative links resolved against the file's own folder."""
    source = Path(source)
    return html_page(source.read_text(encoding="utf-8"), source.parent)
