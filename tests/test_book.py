"""The book end to end: every study notebook executes under papermill with small parameters, the book builds
with -W, and headless Chromium opens every page at 1280 px: all load, every image loads, no internal link is
broken, no request leaves the machine, math is rendered, no code block is empty, nothing sticks out of the
page unless it scrolls, every table fits the page's column, no text in a figure is drawn smaller than the body text, no parameter cell shows its
code, no section is empty; and across the book's figures no loss is drawn in two colours. A screenshot of the
gradient chapter is kept as an artifact."""
import functools
import http.server
import os
import shutil
import threading
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

from lossnb.book import STUDIES, build_book
from conftest import HAVE_FMNIST

ROOT = Path(__file__).parents[1]
CHROMIUM = shutil.which("chromium")
ARTIFACTS = ROOT / "test-artifacts"
# elements of the page's main column that stick out of it without a scrollbar of their own
OVERFLOWING = r"""() => {
  const main = document.querySelector("main") || document.body;
  const right = main.getBoundingClientRect().right + 1;
  const scrolls = el => {
    for (let p = el; p && p !== main; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if ((o === "auto" || o === "scroll") && p.getBoundingClientRect().right <= right) return true;
    }
    return false;
  };
  return [...main.querySelectorAll("table, mjx-container, img, pre, .output")]
    .filter(el => el.getBoundingClientRect().right > right && !scrolls(el))
    .map(el => el.tagName + ": " + (el.textContent || el.getAttribute("src") || "").trim().slice(0, 60));
}"""
# tables wider than the page's text column at 1280 px: a table must fit, not scroll sideways
WIDE_TABLES = r"""() => {
  const main = document.querySelector("main") || document.body;
  const column = (main.querySelector("article") || main).getBoundingClientRect().width;
  return [...main.querySelectorAll("table")].filter(t => t.scrollWidth > column + 1)
    .map(t => `${t.scrollWidth} px in ${Math.round(column)}: ` +
              [...t.querySelectorAll("th")].map(th => th.textContent.trim()).join(" | ").slice(0, 80));
}"""
# parameter cells whose code a reader sees (papermill's parameters are build plumbing: removed or folded away)
VISIBLE_PARAMETERS = r"""() => [...document.querySelectorAll(".tag_parameters .cell_input, .tag_injected-parameters .cell_input")]
  .filter(el => el.offsetParent !== null && !el.closest("details:not([open])"))
  .map(el => el.textContent.trim().slice(0, 60))"""
# sections with nothing but their heading (a folded code toggle or an empty output is not content)
EMPTY_SECTIONS = r"""() => [...document.querySelectorAll("main section")].filter(section => {
  const content = [...section.children].filter(el => !/^H[1-6]$/.test(el.tagName));
  if (content.some(el => el.tagName === "SECTION")) return false;
  const text = content.map(el => el.innerText || "").join(" ")
    .replace(/(Show|Hide) code cell (source|outputs?)/g, "").trim();
  return !text && !content.some(el => el.querySelector("img, svg, table, mjx-container"));
}).map(section => (section.querySelector("h1, h2, h3, h4") || {}).textContent)"""
# per SVG figure: the smallest plain (non-math) text as drawn on the page, in CSS px, and the body's font size
FIGURE_TEXT = r"""async () => {
  const body = parseFloat(getComputedStyle(document.querySelector("main p") || document.body).fontSize);
  const out = [];
  for (const img of document.querySelectorAll("main img")) {
    if (!img.src.endsWith(".svg")) continue;
    const svg = new DOMParser().parseFromString(await (await fetch(img.src)).text(), "image/svg+xml");
    const root = svg.documentElement;
    const viewWidth = parseFloat((root.getAttribute("viewBox") || "0 0 0").split(/\s+/)[2]);
    const scale = img.getBoundingClientRect().width / viewWidth;
    const sizes = [...svg.querySelectorAll("text")]
      .map(t => t.getAttribute("style") || "")
      .filter(style => style.includes("sans-serif"))  // plain text; math glyphs name one font and may be small
      .map(style => parseFloat((style.match(/font-size:\s*([\d.]+)px/) || [0, 0])[1]));
    if (sizes.length) out.push({src: img.src, smallest: Math.min(...sizes) * scale, body});
  }
  return out;
}"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
BOOK_FILES = ["_config.yml", "_toc.yml", "book", "notebooks", "grids", "runs", "benchmarks", "package.json",
              "package-lock.json"]  # the design chapter reads benchmarks/results

pytestmark = pytest.mark.skipif(not HAVE_FMNIST,
                                reason="Debian package dataset-fashion-mnist not installed (the example run needs it)")


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    for name in BOOK_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns(".checkpoints", "studies", "mathjax"))
        elif src.exists():
            shutil.copy2(src, root / name)
    if (ROOT / "node_modules").is_dir():
        os.symlink(ROOT / "node_modules", root / "node_modules")
    return build_book(root, quick=True)  # papermill raises on any error cell; jupyter-book runs with -W


@pytest.fixture(scope="module")
def server(html):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.mark.slow
def test_every_study_is_in_the_built_book(html):
    for name in STUDIES:
        assert (html / "book" / "studies" / f"{name}.html").is_file(), name
    assert (html / "_static" / "mathjax" / "tex-svg.js").is_file()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed")
def test_every_page_loads_offline_in_chromium_with_its_images_links_and_math(html, server):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    pages = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                   if not p.relative_to(html).parts[0].startswith("_"))
    assert len(pages) >= 8
    outside, failed, broken_links, empty_code, overflowing, small_text, wide = [], [], [], [], [], [], []
    parameters, empty_sections = [], []
    figures = 0
    host = urlparse(server).netloc

    def route(r):
        if urlparse(r.request.url).netloc == host or r.request.url.startswith("data:"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS,
                                     chromium_sandbox=False, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route("**/*", route)
        page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
        page.on("requestfailed", lambda r: urlparse(r.url).netloc == host and failed.append(f"failed {r.url}"))
        for rel in pages:
            response = page.goto(server + rel, wait_until="networkidle")
            assert response is not None and response.ok, rel
            bad_images = page.eval_on_selector_all(
                "img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
            assert not bad_images, (rel, bad_images)
            empty_code += [rel] * page.eval_on_selector_all("pre", "ps => ps.filter(p => !p.textContent.trim()).length")
            overflowing += [f"{rel}: {e}" for e in page.evaluate(OVERFLOWING)]
            wide += [f"{rel}: {e}" for e in page.evaluate(WIDE_TABLES)]
            parameters += [f"{rel}: {e}" for e in page.evaluate(VISIBLE_PARAMETERS)]
            empty_sections += [f"{rel}: {e}" for e in page.evaluate(EMPTY_SECTIONS)]
            for fig in page.evaluate(FIGURE_TEXT):
                figures += 1
                if fig["smallest"] < fig["body"] - 0.25:  # a quarter pixel for rounding
                    small_text.append(f"{rel}: {fig['src'].rsplit('/', 1)[-1]} {fig['smallest']:.1f}px")
            broken_links += [f"{rel} -> #{a}" for a in page.eval_on_selector_all(
                "a[href^='#']", "as => as.map(a => a.getAttribute('href').slice(1))"
                " .filter(id => id && !document.getElementById(decodeURIComponent(id)))")]
            for href in page.eval_on_selector_all("a[href]", "as => as.map(a => a.getAttribute('href'))"):
                target = urlparse(urljoin(page.url, href))  # page.url: after any redirect
                if target.netloc == host and not (html / target.path.lstrip("/")).exists():
                    broken_links.append(f"{rel} -> {href}")
        page.goto(server + "book/studies/gradient_analysis.html", wait_until="networkidle")
        page.wait_for_function("document.querySelectorAll('mjx-container svg').length > 10", timeout=30000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "gradient_analysis.png"), full_page=True)
        browser.close()
    assert not outside, f"requests left the machine: {outside[:5]}"
    assert not failed, failed[:5]
    assert not broken_links, broken_links[:5]
    assert not empty_code, f"empty code blocks on {sorted(set(empty_code))}"
    assert not overflowing, overflowing[:5]
    assert not wide, f"tables wider than the page's column: {wide[:5]}"
    assert figures >= 10, "the studies' figures are SVG with their text kept as text"
    assert not small_text, f"figure text under the body size: {small_text[:5]}"
    assert not parameters, f"parameter cells shown: {parameters[:5]}"
    assert not empty_sections, f"sections with nothing in them: {empty_sections[:5]}"
    assert (ARTIFACTS / "gradient_analysis.png").stat().st_size > 10_000


def legend_colours(svg: Path) -> list[tuple[str, str]]:
    """(label, colour) of each legend entry of a matplotlib SVG: a legend group holds, in order, each entry's
    handle (a line or patch, its stroke or fill the colour) and then its text."""
    entries = []
    for legend in ET.parse(svg).getroot().iter():
        if not legend.get("id", "").startswith("legend_"):
            continue
        colour = None
        for group in legend:
            kind = group.get("id", "")
            if kind.startswith(("line2d_", "patch_", "PathCollection_")):
                style = ";".join(p.get("style", "") for p in group.iter() if p.get("style"))  # one part per element
                found = [part.split(":")[1].strip() for part in style.split(";")
                         if part.strip().startswith(("stroke:", "fill:")) and "none" not in part]
                colour = found[0] if found else colour
            elif kind.startswith("text_"):
                text = "".join(t.text or "" for t in group.iter() if t.tag.endswith("text")).strip()
                if text and colour:
                    entries.append((text, colour))
    return entries


@pytest.mark.slow
def test_no_loss_is_drawn_in_two_colours_across_the_book(html):
    colours = defaultdict(set)
    for svg in html.rglob("*.svg"):
        if "mathjax" in svg.parts:
            continue
        for label, colour in legend_colours(svg):
            colours[label].add(colour)
    assert len(colours) >= 10, "the figures' legends were found"
    assert {k: v for k, v in colours.items() if len(v) > 1} == {}
