"""``t2m serve``'s page in a real headless Chromium (driven over the DevTools pipe, tests/cdp.py): both panes
typed into and submitted, the drawings (RDKit SVG) and the neighbours waited for and checked, an error shown
with the API's words, a file uploaded, translated with progress and downloaded. Skipped only where Chromium
is absent (``t2m setup --with-chromium`` installs it).

Screenshots of each pane go to ``$T2M_SERVE_SCREENSHOTS`` when it is set (docs/serve/ holds the committed
ones: ``T2M_SERVE_SCREENSHOTS=docs/serve python -m pytest tests/test_serve_browser.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serve_support import call, live_server, require_serve, shared_service

pytestmark = pytest.mark.timeout(240)

DESCRIPTION = "The molecule is a monocarboxylic acid that is acetic acid in which one of the methyl hydrogens is " \
              "replaced by a phenyl group."
SMILES = "CC(=O)Oc1ccccc1C(=O)O"


@pytest.fixture(scope="module")
def browser_and_server():
    require_serve()
    from t2m.report import find_chromium
    from t2m.serve.app import create_app

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed: `t2m setup --with-chromium` installs Debian's chromium")
    from cdp import Browser

    with live_server(create_app(service=shared_service())) as url, Browser(chromium, height=1100) as browser:
        browser.open(url + "/")
        browser.wait_for("document.body && document.body.dataset.ready === 'true'", what="the page to load its model")
        yield browser, url


def _shots() -> Path | None:
    folder = os.environ.get("T2M_SERVE_SCREENSHOTS")
    return Path(folder) if folder else None


def _submit(browser, pane: str, text: str, system: str | None = None) -> None:
    if system is not None:
        browser.js(f"(() => {{ const s = document.querySelector('#pane-{pane} select[name=system]'); "
                   f"s.value = '{system}'; s.dispatchEvent(new Event('change')); }})()")
    browser.type_into(f"#{pane}-input", text)
    browser.js(f"document.querySelector('#pane-{pane}').dataset.state = ''")
    browser.click(f"#pane-{pane} button[type=submit]")
    browser.wait_for(f"['done', 'error'].includes(document.querySelector('#pane-{pane}').dataset.state)",
                     timeout=120, what=f"the {pane} answer")


# every image of a pane's result: (its alt, SVG data URI, drawn width) -- naturalWidth > 0: the SVG was decoded
IMAGES = """Array.from(document.querySelectorAll('#pane-{pane} .result img')).map(i => [i.alt,
  i.src.startsWith('data:image/svg+xml'), i.complete && i.naturalWidth > 0])"""


def _images(browser, pane: str) -> list:
    browser.wait_for(f"Array.from(document.querySelectorAll('#pane-{pane} .result img')).every(i => i.complete)")
    return browser.js(IMAGES.format(pane=pane))


def test_the_page_offers_the_systems_with_the_default_marked(browser_and_server):
    browser, _ = browser_and_server
    options = browser.js("Array.from(document.querySelectorAll('#pane-mol2text select[name=system] option'))"
                         ".map(o => [o.value, o.textContent, o.selected])")
    default = shared_service().default_system("mol2text")
    assert [o[0] for o in options] == shared_service().systems("mol2text")
    assert [o for o in options if o[2]] == [[default, f"{default} (default)", True]]
    assert browser.js("document.querySelector('#model-info').textContent").startswith("Model: ")


def test_description_to_molecule(browser_and_server):
    browser, url = browser_and_server
    _submit(browser, "text2mol", DESCRIPTION)
    assert browser.js("document.querySelector('#pane-text2mol').dataset.state") == "done"
    smiles = browser.js("document.querySelector('#pane-text2mol .output').textContent")
    status, api, _ = call(url + "/api/translate", {"task": "text2mol", "inputs": [DESCRIPTION]})
    assert status == 200 and smiles == api["outputs"][0]["output"]  # the page shows what the API answers
    assert "valid SMILES" in browser.js("document.querySelector('#pane-text2mol .validity').textContent")
    images = _images(browser, "text2mol")
    assert images and all(svg and drawn for _, svg, drawn in images), images
    assert [alt for alt, _, _ in images][0] == "the molecule"
    neighbours = browser.js("Array.from(document.querySelectorAll('#pane-text2mol .neighbours li'))"
                            ".map(li => [li.querySelector('.similarity').textContent, li.querySelector('.text').textContent,"
                            " !!li.querySelector('img')])")
    assert len(neighbours) == len(api["outputs"][0]["neighbours"]) >= 1
    assert [sim for sim, _, _ in neighbours] == [f"#{i} · similarity {n['similarity']:.3f}"
                                                 for i, n in enumerate(api["outputs"][0]["neighbours"], start=1)]
    assert all(text and drawn for _, text, drawn in neighbours)
    assert neighbours[0][1] == api["outputs"][0]["neighbours"][0]["source"]
    if _shots():
        browser.screenshot("#pane-text2mol", _shots() / "text2mol.png")


def test_molecule_to_description(browser_and_server):
    browser, url = browser_and_server
    _submit(browser, "mol2text", SMILES)
    caption = browser.js("document.querySelector('#pane-mol2text .output').textContent")
    status, api, _ = call(url + "/api/translate", {"task": "mol2text", "inputs": [SMILES]})
    assert status == 200 and caption == api["outputs"][0]["output"] and caption.startswith("The molecule")
    images = _images(browser, "mol2text")
    assert images[0][0] == "the input molecule" and all(svg and drawn for _, svg, drawn in images), images
    texts = browser.js("Array.from(document.querySelectorAll('#pane-mol2text .neighbours li .text'))"
                       ".map(e => e.textContent)")
    assert texts == [n["target"] for n in api["outputs"][0]["neighbours"]]
    if _shots():
        browser.screenshot("#pane-mol2text", _shots() / "mol2text.png")


def test_the_t5_from_the_page(browser_and_server):
    browser, _ = browser_and_server
    _submit(browser, "mol2text", "CCO", system="model")
    assert browser.js("document.querySelector('#pane-mol2text').dataset.state") == "done"
    assert browser.js("document.querySelector('#pane-mol2text .timing').textContent").startswith("model, 1 beam")
    assert browser.js("document.querySelector('#pane-mol2text .output').textContent").startswith("The molecule")
    assert len(browser.js("Array.from(document.querySelectorAll('#pane-mol2text .neighbours li'))")) >= 1


def test_a_bad_input_shows_the_apis_words(browser_and_server):
    browser, url = browser_and_server
    _submit(browser, "mol2text", "C1CC(", system="retrieval")
    assert browser.js("document.querySelector('#pane-mol2text').dataset.state") == "error"
    shown = browser.js("document.querySelector('#pane-mol2text .error').textContent")
    status, api, _ = call(url + "/api/translate", {"task": "mol2text", "inputs": ["C1CC("]})
    assert status == 422 and shown == api["error"]
    assert browser.js("document.querySelector('#pane-mol2text .result').hidden") is True


def test_a_file_is_translated_with_progress_and_downloaded(browser_and_server, tmp_path):
    browser, _ = browser_and_server
    upload = tmp_path / "molecules.txt"
    upload.write_text("CCO\nc1ccccc1O\nCC(=O)O\n", encoding="utf-8")
    browser.js("(() => { const f = document.querySelector('#file-form'); f.elements.task.value = 'mol2text'; "
               "f.elements.task.dispatchEvent(new Event('change')); })()")
    browser.set_file("#file-input", upload)
    browser.click("#file-form button[type=submit]")
    browser.wait_for("document.querySelector('#pane-file').dataset.state === 'done'", timeout=60, what="the file")
    assert browser.js("document.querySelector('#file-progress progress').value") == 3
    name = browser.js("document.querySelector('#file-progress .download').download")
    text = browser.js("fetch(document.querySelector('#file-progress .download').href).then(r => r.text())")
    assert name == "molecules.mol2text.txt"
    rows = ["CCO", "c1ccccc1O", "CC(=O)O"]
    expected = [r.output for r in shared_service().run("mol2text", rows, "retrieval", n_best=False)]
    assert text.splitlines() == expected
    if _shots():
        browser.screenshot("#pane-file", _shots() / "file.png")
