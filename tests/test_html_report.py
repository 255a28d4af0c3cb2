"""findings.md to one self-contained HTML page (fmnist_initopt.html_report), on hand-made Markdown."""

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from fmnist_initopt.html_report import MAX_PAGE_BYTES, MissingFigureError, html_page, markdown_file_to_html

FINDINGS = """<!-- generated -->

# Findings: a & b

The *headline* paragraph.

| init + optimizer | accuracy |
| --- | --- |
| he + sgd | 0.9000 |

Tables: [one row per run (summary.csv)](summary.csv), [elsewhere](https://example.org/x.csv), [up](#findings-a-b).

## Figures

![Noise drawn as a figure](figures/noise.png)
"""


def noise_png(path, size=64, seed=0):
    """A PNG that compresses badly, so its size is known to be about size² × 3 bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def embedded_images(page):
    return [base64.b64decode(uri) for uri in re.findall(r'<img[^>]* src="data:image/png;base64,([^"]+)"', page)]


@pytest.fixture
def findings(tmp_path):
    noise_png(tmp_path / "figures" / "noise.png")
    (tmp_path / "summary.csv").write_text("run,accuracy\nhe_sgd_seed1,0.9\n")
    source = tmp_path / "findings.md"
    source.write_text(FINDINGS)
    return source


def test_the_page_has_the_tables_the_figures_and_the_downloads_inside_it(findings):
    page = markdown_file_to_html(findings)
    assert "<title>Findings: a &amp; b</title>" in page
    assert "<em>headline</em>" in page
    assert "<td>he + sgd</td>" in page
    # the figure is the file itself, shown in place with its caption
    assert embedded_images(page) == [(findings.parent / "figures" / "noise.png").read_bytes()]
    assert "<figcaption>Noise drawn as a figure</figcaption>" in page
    # a local table downloads from inside the page; web links and anchors are left alone
    csv = base64.b64encode((findings.parent / "summary.csv").read_bytes()).decode()
    assert f'<a download="summary.csv" href="data:text/csv;base64,{csv}">' in page
    assert 'href="https://example.org/x.csv"' in page and 'href="#findings-a-b"' in page
    assert 'id="findings-a-b"' in page
    assert "figures/noise.png" not in page


def test_a_figure_that_is_not_there_is_an_error_naming_it(findings):
    (findings.parent / "figures" / "noise.png").unlink()
    with pytest.raises(MissingFigureError, match="figures/noise.png"):
        markdown_file_to_html(findings)


def test_a_page_too_big_for_the_report_embeds_reduced_figures_and_says_so(findings):
    figure = noise_png(findings.parent / "figures" / "noise.png", size=200)
    as_drawn = html_page(findings.read_text(), findings.parent, max_bytes=10**7)
    assert "The figures on this page are reduced" not in as_drawn
    limit = len(as_drawn.encode()) // 2
    page = html_page(findings.read_text(), findings.parent, max_bytes=limit)
    assert len(page.encode()) <= limit
    assert "The figures on this page are reduced (256 colours" in page
    (reduced,) = embedded_images(page)
    with Image.open(figure) as original, Image.open(io.BytesIO(reduced)) as shown:
        assert shown.mode == "P" and shown.width <= original.width
    # the report's own limit: Chromium's 2 MiB URL holds the page as base64
    assert MAX_PAGE_BYTES * 4 / 3 < 2 * 1024 * 1024
