"""`t2m setup`: the WordNet nltk corpus layout (lexnames included), idempotence, and the installed result.

The layout tests run on fake Debian files in a temporary folder (no apt, no root). The last test checks
the real installation that the CI's `t2m setup` step makes, and fails with that instruction if missing.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

import t2m.resources as resources
from evaluation import wordnet


def fake_debian_wordnet(root: Path, version: str = "3.0") -> Path:
    src = root / "usr-share-wordnet"
    src.mkdir()
    for name in wordnet.WORDNET_FILES:
        if name != "lexnames":
            (src / name).write_text(
                f"  1 WordNet {version} Copyright 2006 by Princeton University.\n" if name == "data.adj" else "x\n"
            )
    return src


def test_lexnames_has_the_45_lexicographer_files():
    lines = resources.lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[3] == "03\tnoun.Tops\t1" and lines[44] == "44\tadj.ppl\t3"
    for i, line in enumerate(lines):  # nltk's reader: `index, lexname, _ = line.split(); assert int(index) == i`
        index, name, category = line.split("\t")
        assert int(index) == i and category == str({"noun": 1, "verb": 2, "adj": 3, "adv": 4}[name.split(".")[0]])


def test_lexnames_agree_with_the_manual_page():
    page = Path("/usr/share/man/man5/lexnames.5WN.gz")
    if not page.is_file():
        pytest.skip("lexnames(5WN) manual page not installed (comes with wordnet-base)")
    text = gzip.decompress(page.read_bytes()).decode("utf-8", "replace")
    table = re.findall(r"^(\d\d)\t([a-z]+\.[A-Za-z]+)\s*\t", text, flags=re.M)
    assert [(f"{i:02d}", n) for i, n in enumerate(resources.LEXNAMES)] == table


def test_layout_makes_an_nltk_corpus_dir(tmp_path):
    src = fake_debian_wordnet(tmp_path)
    target = resources.layout_wordnet(src, tmp_path / "nltk_data")
    assert target == tmp_path / "nltk_data" / "corpora" / "wordnet"
    assert sorted(p.name for p in target.iterdir()) == sorted(wordnet.WORDNET_FILES)
    assert not any(p.is_symlink() for p in target.iterdir())  # nltk refuses files resolving outside its path
    assert (target / "lexnames").read_text() == resources.lexnames_text()
    assert resources._wordnet_ready(target)
    assert not list(target.parent.glob(".wordnet*"))  # no temporary folders left behind


def test_setup_is_idempotent_and_needs_no_apt_when_done(tmp_path, monkeypatch):
    src = fake_debian_wordnet(tmp_path)
    monkeypatch.setattr(resources, "DEBIAN_WORDNET_DIR", src)
    monkeypatch.setattr(resources, "check_wordnet_with_nltk", lambda nltk_data: "checked")

    def no_apt(packages):
        raise AssertionError(f"apt-get should not run: {packages}")

    monkeypatch.setattr(resources, "apt_install", no_apt)
    nltk_data = tmp_path / "nltk_data"
    target = resources.setup_wordnet(nltk_data)
    mtime = (target / "data.noun").stat().st_mtime_ns
    assert resources.setup_wordnet(nltk_data) == target  # second run: found in place, nothing copied
    assert (target / "data.noun").stat().st_mtime_ns == mtime


def test_setup_refuses_another_wordnet_version(tmp_path, monkeypatch):
    src = fake_debian_wordnet(tmp_path, version="3.1")
    monkeypatch.setattr(resources, "DEBIAN_WORDNET_DIR", src)
    with pytest.raises(resources.SetupError, match="does not hold WordNet 3.0"):
        resources.setup_wordnet(tmp_path / "nltk_data")


def test_evaluation_finds_the_project_dir_first(tmp_path, monkeypatch):
    src = fake_debian_wordnet(tmp_path)
    resources.layout_wordnet(src, tmp_path / "nltk_data")
    monkeypatch.setenv("T2M_NLTK_DATA", str(tmp_path / "nltk_data"))
    loc = wordnet.require_wordnet()
    assert loc.path == tmp_path / "nltk_data" / "corpora" / "wordnet" and loc.version == "3.0" and not loc.is_zip


def test_setup_without_root_says_what_to_run(monkeypatch):
    monkeypatch.setattr(resources.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(resources.shutil, "which", lambda name: "/usr/bin/apt-get")
    with pytest.raises(resources.SetupError, match="sudo t2m setup"):
        resources.apt_install(resources.WORDNET_PACKAGES)


def test_installed_wordnet_is_readable_by_nltk():
    """What `t2m setup` (run by the CI before the tests) leaves behind."""
    try:
        loc = wordnet.require_wordnet()
    except wordnet.WordNetMissingError as e:
        pytest.fail(f"run `t2m setup` first (the CI does before pytest):\n{e}")
    wn = wordnet.load_wordnet_reader(loc)
    assert wn.get_version() == "3.0"
    assert "automobile" in {lemma.name() for s in wn.synsets("car") for lemma in s.lemmas()}
    assert wn.synsets("dogs")[0].lexname() == "noun.animal"  # morphy + lexnames work
