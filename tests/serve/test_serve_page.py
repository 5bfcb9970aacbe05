"""The web page, end to end in headless Chromium (Debian's ``chromium``, driven by
Playwright's Python package; ``make test`` installs the browser): pick the demo image, run
caption, VQA, grounding, entailment and classification, and check what a person would see:
the tasks and fields the server lists, the texts, the latency, the box drawn on the image, a
ranking, an error message, and a screenshot. The page must load nothing from any other
origin."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect, sync_playwright

from ofa.demo import DEMO_IMAGE, DEMO_QUERIES
from ofa.tasks import TASKS

CHROMIUM = "/usr/bin/chromium"
# without the background-networking switches Chromium dials Google services, which this
# closed network refuses
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

BOX_PIXELS = """() => {
  const c = document.getElementById("canvas");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] > 240 && d[i + 1] < 20 && d[i + 2] > 240) n++;
  }
  return {n: n, width: c.width, height: c.height};
}"""
PIXEL = """([x, y]) => Array.from(
  document.getElementById("canvas").getContext("2d").getImageData(x, y, 1, 1).data)"""


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                    headless=True)
        yield browser
        browser.close()


def test_page_caption_vqa_grounding(browser, shared_server, demo_model, demo_answers,
                                    tmp_path):
    queries = json.loads(DEMO_QUERIES.read_text())
    image = str(DEMO_IMAGE)
    caption = demo_model.caption(image)["caption"]
    answer = demo_model.vqa(image, queries["question"], answers=demo_answers)["answer"]
    box = demo_model.ground(image, queries["text"])["box"]

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))

    page.goto(f"{shared_server.url}/")
    expect(page.locator("#model")).to_contain_text("shapes-demo")
    # the task list and each task's fields come from the server's table
    expect(page.locator("#task option")).to_have_count(len(TASKS))
    assert page.locator("#task option").evaluate_all(
        "options => options.map(o => o.value)") == list(TASKS)
    expect(page.locator("#fields fieldset")).to_have_count(len(TASKS))
    assert page.locator("#summarize-text").evaluate("e => e.tagName") == "TEXTAREA"
    expect(page.locator("#canvas")).to_be_hidden()
    page.set_input_files("#file", image)
    expect(page.locator("#canvas")).to_be_visible()
    expect(page.locator("#file-name")).to_contain_text("demo.png (128 × 128)")

    page.select_option("#task", "caption")
    page.click("#run")
    expect(page.locator("#result")).to_have_text(caption)
    expect(page.locator("#latency")).to_contain_text(re.compile(r"\d+ ms on the server .*"
                                                                r"batch of \d+.* round trip"))

    page.select_option("#task", "vqa")
    expect(page.locator("#vqa-question")).to_be_visible()
    expect(page.locator("#ground-text")).to_be_hidden()
    expect(page.locator("#vqa-mode")).to_be_hidden()  # an option: folded away
    page.fill("#vqa-question", queries["question"])
    page.click("#run")
    expect(page.locator("#result")).to_have_text(answer)
    assert page.evaluate(BOX_PIXELS)["n"] == 0  # no box yet

    page.select_option("#task", "ground")
    page.fill("#ground-text", queries["text"])
    page.click("#run")
    shown = ", ".join(str(round(v)) for v in box)
    expect(page.locator("#result")).to_have_text(f"box [{shown}]")
    drawn = page.evaluate(BOX_PIXELS)
    scale = drawn["width"] // 128
    assert scale >= 1 and drawn["height"] == 128 * scale
    x0, y0, x1, y1 = (v * scale for v in box)
    assert drawn["n"] > 2 * ((x1 - x0) + (y1 - y0))  # an outline, at least one pixel thick
    for x, y in ((x0, (y0 + y1) / 2), (x1, (y0 + y1) / 2), ((x0 + x1) / 2, y0)):
        r, g, b, _ = page.evaluate(PIXEL, [int(x), int(y)])
        assert (r, g, b) == (255, 0, 255), (x, y)
    r, g, b, _ = page.evaluate(PIXEL, [int((x0 + x1) / 2), int((y0 + y1) / 2)])
    assert (r, g, b) != (255, 0, 255)  # the inside is the image, not paint

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000

    # other answers: the result_key's value (with the answer beside it), a ranking
    entail = demo_model.entail(image, "there is a triangle")
    page.select_option("#task", "entail")
    page.fill("#entail-hypothesis", "there is a triangle")
    page.click("#run")
    expect(page.locator("#result")).to_have_text(f"{entail['label']} ({entail['answer']})")
    assert page.evaluate(BOX_PIXELS)["n"] == 0  # the box is gone with the grounding answer
    ranked = demo_model.classify(image, ["triangle", "square", "circle"], topk=2)["topk"]
    page.select_option("#task", "classify")
    page.fill("#classify-classes", "triangle, square, circle")
    page.click("summary:visible")  # open the options
    page.fill("#classify-topk", "2")
    page.click("#run")
    expect(page.locator("#result")).to_have_text(ranked[0]["label"])
    expect(page.locator("#ranking li")).to_have_count(2)
    expect(page.locator("#ranking li").first).to_contain_text(ranked[0]["label"])

    # a drawing: the images the server sent, shown with their scores
    drawn = demo_model.run("imagine", None, text="a red circle", samples=2, top=2)
    page.select_option("#task", "imagine")
    page.fill("#imagine-text", "a red circle")
    page.click("summary:visible")
    page.fill("#imagine-samples", "2")
    page.fill("#imagine-top", "2")
    page.click("#run")
    expect(page.locator("#result")).to_have_text("2 images, ranked by caption")
    expect(page.locator("#gallery img")).to_have_count(2)
    expect(page.locator("#gallery figcaption").first).to_contain_text(
        f"{drawn['scores'][0]:.4f}")
    widths = page.eval_on_selector_all("#gallery img", "els => els.map(e => e.naturalWidth)")
    assert widths == [im.width for im in drawn["images"]]

    # a mistake shows the server's reason, not a blank page
    page.select_option("#task", "vqa")
    page.fill("#vqa-question", "")
    page.click("#run")
    expect(page.locator("#error")).to_contain_text("422")
    expect(page.locator("#error")).to_contain_text("question")

    assert requested and all(u.startswith(shared_server.url) for u in requested), requested
    assert [p for p in problems if "422" not in p] == []
    page.close()
