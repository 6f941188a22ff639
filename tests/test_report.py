"""The report's pieces: molecule drawings, self-contained HTML, Markdown tables, and the Chromium check
itself (it must notice a broken image, or its pass on the bench report means nothing)."""

from __future__ import annotations

import base64

import pytest

from t2m.chem import molecule_svg
from t2m.report import Table, data_uri, fmt, fmt_delta, molecule_img, table_markdown

# a 2x1 red/blue PNG
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAIAAAB7QOjdAAAAEUlEQVR4nGP4z8DwHwyZGBgYAEj9BP6xsD6tAAAAAElFTkSuQmCC")


def test_molecule_drawings_are_svg_and_invalid_smiles_get_a_placeholder():
    svg = molecule_svg(r"C/C=C\C(=O)O")
    assert svg is not None and svg.lstrip().startswith("<?xml") and "<svg" in svg and "width='220px'" in svg
    assert molecule_svg("C1CC") is None and molecule_svg("") is None
    assert molecule_img("CCO", "ethanol").startswith('<img alt="ethanol" src="data:image/svg+xml;base64,')
    assert "not a valid molecule" in molecule_img("not smiles", "x")


def test_markdown_table_escapes_pipes_and_formats_numbers():
    table = Table("t", ["system", "BLEU-4"], [["a|b", fmt(0.123456, "bleu4")], ["c", fmt(None)]], ["note"])
    text = table_markdown(table)
    assert "| a\\|b | 0.1235 |" in text and "| c | n/a |" in text and "|---|---:|" in text and "_note_" in text
    assert fmt(12.3456, "sacrebleu") == "12.35" and fmt(1.23456, "fcd") == "1.235" and fmt(1234) == "1,234"
    assert fmt_delta({"delta": 0.01, "ci95": [0.002, 0.02], "excludes_zero": True}) == "+0.0100 [+0.0020, +0.0200] *"


def test_browser_check_sees_loaded_and_broken_images(tmp_path):
    from t2m.report import browser_check, find_chromium

    if find_chromium() is None:
        pytest.skip("Chromium is not installed: `t2m setup --with-chromium` installs Debian's chromium")
    page = tmp_path / "page.html"
    page.write_text(f'<!DOCTYPE html><html><head><title>x</title></head><body>'
                    f'<img alt="good" src="{data_uri(PNG, "image/png")}">'
                    f'<img alt="molecule" src="{data_uri(molecule_svg("c1ccccc1O").encode(), "image/svg+xml")}">'
                    f'<img alt="broken" src="data:image/png;base64,AAAA"></body></html>', encoding="utf-8")
    result = browser_check(page)
    assert result["images"] == 3 and result["loaded"] == 2 and result["broken"] == ["broken"]
    assert result["widths"][:2] == [2, 220]


def test_readme_bench_section_is_replaced_between_the_markers():
    from t2m.report import README_BEGIN, README_END, readme_with_bench

    readme = f"# t2m\n\n## Results\n\nContext.\n\n{README_BEGIN}\n\nold table\n\n{README_END}\n\n## After\n"
    bench_md = "## Benchmark: does retrieval help?\n\nData: x.\n\n### text2mol\n\n| a |\n|---|\n"
    out = readme_with_bench(readme, bench_md)
    assert "old table" not in out and "Benchmark: does retrieval help?" not in out
    assert "#### text2mol" in out and "Data: x." in out
    assert out.startswith("# t2m\n\n## Results\n\nContext.") and out.endswith(f"{README_END}\n\n## After\n")
    assert readme_with_bench(out, bench_md) == out  # idempotent
    with pytest.raises(ValueError, match="docs/results.md: no bench markers"):
        readme_with_bench("# t2m\n", bench_md)


def test_the_report_renders_bench_json_without_importing_the_bench():
    """The bench imports the report (to write bench.md and report.html), so the report imports no bench module:
    the run's command line comes in as text, made by t2m.bench.config.command_line."""
    import ast
    from pathlib import Path

    import t2m.report
    from t2m.bench.config import BenchConfig, command_line

    tree = ast.parse(Path(t2m.report.__file__).read_text(encoding="utf-8"))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("t2m.bench")], imported
    settings = {**BenchConfig(out="out").to_json(), "beams": [5], "fcd": False, "progress": True}
    assert command_line({"settings": settings}) == "t2m bench --out out --beams 5 --no-fcd"
