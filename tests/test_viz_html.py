"""The backprop stepper page: its record checked against the engine, then stepped in a real browser.

The browser test drives the system Chromium (headless, through Playwright) over the page with the
network cut off, and compares every number the page shows with values computed here by the engine.
"""
import os
import re
import shutil
import tempfile

import numpy as np
import pytest

from micrornn.nn.functional import cross_entropy
from micrornn.nn import SequenceModel
from micrornn.viz.flow import hidden_states, walk
from micrornn.viz.html import demo_problem, to_html, write_html
from micrornn.viz.trace import node_ids, trace_backprop

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="the Graphviz 'dot' program is not installed here (.ci/run installs it)")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def engine_reference(model, x, y):
    """{node name: (data, grad)} from the engine's own forward and backward, and h1's two paths."""
    loss, _ = model.loss(x, y)
    nodes = walk([loss])
    for n in nodes:
        if not n.is_leaf:
            n.retain_grad()
        n.grad = None
    loss.backward()
    names = node_ids(loss)
    ref = {names[id(n)]: (np.asarray(n.data), None if n.grad is None else np.asarray(n.grad)) for n in nodes}
    paths = []
    for steps in (slice(0, 1), slice(1, None)):  # L_1 alone reaches h1 through o_1; L_2 + L_3 only through h_2
        logits, _ = model(x)
        part = cross_entropy(logits[steps], y[steps], reduction="sum")
        h1 = hidden_states(part)[(0, 1)].retain_grad()
        part.backward()
        paths.append(h1.grad.copy())
    model.zero_grad()
    return ref, paths


def numbers(text):
    return np.array([float(v) for v in NUMBER.findall(text)])


def same(shown_text, expected):
    shown = numbers(shown_text)
    expected = np.asarray(expected, dtype=float).ravel()
    return shown.shape == expected.shape and np.allclose(shown, expected, rtol=1e-5, atol=1e-12)


# ---- the record, without a browser ---------------------------------------------------------------

def test_trace_replays_the_engine_and_splits_h1_into_two_paths():
    model, x, y = demo_problem(steps=3)
    ref, (path1, path2) = engine_reference(model, x, y)
    trace = trace_backprop(model, x, y)
    for name, info in trace.nodes.items():
        data, grad = ref[name]
        assert np.allclose(info["value"], data)
        assert (info["grad"] is None) == (grad is None) and (grad is None or np.allclose(info["grad"], grad))
    h1 = trace.focus["node"]
    into_h1 = [(e["node"], s["value"]) for e in trace.events if e["phase"] == "backward"
               for s in e["sends"] if s["to"] == h1]
    assert [n for n, _ in into_h1] == trace.focus["from"] and len(into_h1) == 2
    assert np.allclose(into_h1[0][1], path1) and np.allclose(into_h1[1][1], path2)
    assert np.allclose(path1 + path2, ref[h1][1])
    forward = [trace.nodes[e["node"]]["step"] for e in trace.events if e["phase"] == "forward"]
    steps = [s for s in forward if s is not None]
    assert steps == sorted(steps) == [1, 1, 2, 2, 2, 3, 3, 3]


def test_trace_leaves_accumulated_gradients_alone():
    model, x, y = demo_problem(steps=2)
    for p in model.parameters():
        p.grad = np.full(p.shape, 5.0)
    trace = trace_backprop(model, x, y)
    W = next(i for i, n in trace.nodes.items() if n["label"] == "rnn.cells.0.W")
    assert np.allclose(model.rnn.cells[0].W.grad, 5.0 + np.array(trace.nodes[W]["grad"]))


@needs_dot
def test_page_is_one_self_contained_file(tmp_path):
    page = to_html(steps=3)
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "const TRACE = {" in page
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # nothing loaded from elsewhere
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}  # XML namespaces, never fetched
    assert write_html(tmp_path / "p.html", steps=2).read_text(encoding="utf-8").count("<svg") == 1
    with pytest.raises(ValueError, match=".html"):
        write_html(tmp_path / "p.txt")
    with pytest.raises(ValueError, match="focus_step"):
        to_html(steps=2, focus_step=2)
    with pytest.raises(ValueError, match="steps"):
        to_html(steps=0)
    fused = SequenceModel(2, 3, 3, fused=True, rng=0)
    with pytest.raises(ValueError, match="fused"):
        to_html(fused, np.zeros((2, 1, 2)), np.zeros((2, 1), dtype=int))


# ---- in a browser --------------------------------------------------------------------------------

def _browser_or_skip():
    """Playwright's sync API, or a skip naming what is missing."""
    if shutil.which("dot") is None:
        pytest.skip("the Graphviz 'dot' program is not installed (the page embeds its SVG)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the Python package playwright is not installed (pip install playwright; .ci/run does)")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    return sync_playwright


def test_browser_steps_forward_and_backward_and_shows_the_engines_numbers(tmp_path):
    sync_playwright = _browser_or_skip()
    model, x, y = demo_problem(steps=3)
    ref, (path1, path2) = engine_reference(model, x, y)
    page_file = write_html(tmp_path / "bptt.html", model, x, y)
    requests, errors = [], []
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        browser = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                        args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        try:
            browser.route("**/*", lambda route: (requests.append(route.request.url),
                                                 route.continue_() if route.request.url.startswith("file:")
                                                 else route.abort()))
            page = browser.new_page()
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(page_file.as_uri())
            check_page(page, ref, path1, path2)
        finally:
            browser.close()
    assert not errors, errors
    assert requests and all(u.startswith("file:") for u in requests), requests


SNAPSHOT = """(button) => {
  if (button) document.getElementById(button).click();
  const text = (sel) => { const el = document.querySelector(sel); return el ? el.textContent : null; };
  const rows = {};
  for (const tr of document.querySelectorAll("table#nodes tbody tr"))
    rows[tr.dataset.node] = {value: tr.querySelector(".value").textContent, grad: tr.querySelector(".grad").textContent,
                             partial: tr.querySelector(".grad").classList.contains("partial")};
  const titles = (cls) => [...document.querySelectorAll("#graph g.edge." + cls + " title")].map((t) => t.textContent);
  return {status: text("#status"), current: (document.querySelector("tr.current") || {dataset: {}}).dataset.node || null,
          currentValue: text("#current .value"), termA: text("#paths .term-a .matrix"),
          termB: text("#paths .term-b .matrix"), total: text("#paths .total"), rows,
          pathA: titles("path-a"), pathB: titles("path-b")};
}"""


def check_page(page, ref, path1, path2):
    """Step the page with its buttons and compare what it shows with the engine's numbers."""
    press = lambda button=None: page.evaluate(SNAPSHOT, button)  # noqa: E731 (one round trip per press)
    forward = page.evaluate("TRACE.events.filter(e => e.phase === 'forward').map(e => e.node)")
    h1 = page.evaluate("TRACE.focus.node")
    assert len(forward) == 17

    # Forward, one node at a time: each node shows the engine's value, nothing has a gradient yet.
    s = press()
    inputs = [n for n, info in page.evaluate("TRACE.nodes").items() if info["kind"] == "input"]
    assert inputs and all(s["rows"][n]["grad"] == "no gradient: not a parameter" for n in inputs)  # from the start
    for i, node in enumerate(forward):
        assert s["rows"][node]["value"] == "not yet"
        s = press("next")
        assert s["current"] == node and s["status"].startswith(f"forward {i + 1}/17")
        assert same(s["rows"][node]["value"], ref[node][0]) and same(s["currentValue"], ref[node][0]), node
        assert s["rows"][node]["grad"] == "not yet"

    # One time step at a time: the blocks come in time order.
    page.click("#reset")  # a real mouse click, as a reader would
    s, blocks = press(), []
    while not s["status"].startswith("backward"):
        s = press("next-step")
        blocks.append(s["status"].split(" · ")[1])
    assert blocks[:6] == ["layer 0, all steps at once", "layer 0, step 1", "layer 0, step 2", "layer 0, step 3",
                          "layer 0, all steps at once", "head and loss"]

    # "start backward" lands on the first backward step (the loss seeds dL/dL = 1), not on the last forward one.
    s = press("to-backward")
    assert s["status"].startswith("backward 1/17"), s["status"]
    assert s["rows"][forward[-1]]["grad"] == "[1.00000]"
    # Backward until the first path reaches h1: a partial gradient equal to path 1 alone.
    while s["termA"] == "not yet":
        s = press("next")
    assert same(s["termA"], path1) and s["termB"] == "not yet"
    assert same(s["rows"][h1]["grad"], path1) and s["rows"][h1]["partial"]
    assert len(s["pathA"]) == 1 and not s["pathB"]

    # ... then the second path through h2 arrives and the two add up to the engine's dL/dh1.
    while s["termB"] == "not yet":
        s = press("next")
    assert same(s["termB"], path2) and same(s["total"], ref[h1][1])
    assert same(s["rows"][h1]["grad"], ref[h1][1]) and not s["rows"][h1]["partial"]
    assert len(s["pathA"]) == 1 and len(s["pathB"]) == 1
    assert all(t.startswith(h1 + "->") for t in s["pathA"] + s["pathB"])  # both edges leave h1

    # At the end every node shows the engine's value and gradient (the input has none).
    page.click("#end")
    s = press()
    for node, row in s["rows"].items():
        data, grad = ref[node]
        assert same(row["value"], data), node
        assert (row["grad"] == "no gradient: not a parameter" if grad is None
                else same(row["grad"], grad) and not row["partial"]), node
    page.keyboard.press("ArrowLeft")
    assert press()["status"].startswith("backward 16/17")


# ---- any cell, and two window widths ------------------------------------------------------------------

def _open(pw, profile, page_file, width):
    """A headless Chromium page of the given window width with page_file loaded (network cut off)."""
    browser = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                    args=CHROMIUM_ARGS, viewport={"width": width, "height": 900})
    browser.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page = browser.new_page()
    page.goto(page_file.as_uri())
    return browser, page


FITS = """() => {
  const right = Math.max(...[...document.querySelectorAll("table#nodes tr > *:last-child")]
                            .map((c) => c.getBoundingClientRect().right));
  const side = document.getElementById("side");
  return {right, viewport: document.documentElement.clientWidth, page: document.documentElement.scrollWidth,
          sideScroll: side.scrollWidth, sideClient: side.clientWidth};
}"""


@pytest.mark.parametrize("width", [900, 1400])
def test_node_table_is_not_clipped_in_a_narrow_or_a_wide_window(tmp_path, width):
    sync_playwright = _browser_or_skip()
    page_file = write_html(tmp_path / "bptt.html", steps=3)
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        browser, page = _open(pw, profile, page_file, width)
        try:
            page.click("#end")  # every cell filled: the widest the table gets
            fit = page.evaluate(FITS)
        finally:
            browser.close()
    assert fit["right"] <= fit["viewport"] and fit["page"] <= fit["viewport"], fit  # nothing past the right edge
    assert fit["sideScroll"] <= fit["sideClient"], fit  # nor hidden inside the side column


def test_browser_steps_a_user_cell_to_the_engines_gradients(tmp_path):
    sync_playwright = _browser_or_skip()
    from user_cells import PeepholeLSTM, user_data, user_model

    from micrornn.viz.flow import sequence_loss
    model = user_model(PeepholeLSTM, input_size=2, hidden_size=2, output_size=2)
    x, y = user_data(T=2, B=1, input_size=2, output_size=2)
    page_file = write_html(tmp_path / "cell.html", model, x, y)
    model.zero_grad()  # the page's trace ran a backward of its own
    loss = sequence_loss(model, x, y)
    loss.backward()
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        browser, page = _open(pw, profile, page_file, 1400)
        try:
            assert page.evaluate("document.getElementById('paths').hidden")  # the two-path panel is the vanilla cell's
            assert page.evaluate("document.getElementById('two-paths-text').hidden")
            page.click("#end")
            rows = page.evaluate("""() => [...document.querySelectorAll("table#nodes tbody tr")].map(
                (tr) => [tr.cells[0].textContent, tr.querySelector(".grad").textContent])""")
            status = page.evaluate("document.getElementById('status').textContent")
        finally:
            browser.close()
    shown = dict(rows)
    assert status.startswith("backward") and "PeepholeLSTM cell" in page_file.read_text(encoding="utf-8")
    for name, g in grads.items():
        assert same(shown[name], g), name
def test_trace_walks_with_the_engine_and_releases_the_graph():
    model, x, y = demo_problem(steps=2)
    trace = trace_backprop(model, x, y)
    assert trace.extra["root"] is not None  # the loss stays drawable
    assert all(p.data.flags.writeable for p in model.parameters())  # its saved arrays were released
