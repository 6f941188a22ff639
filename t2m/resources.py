"""Install the offline resources evaluation and tests need (``t2m setup``, :mod:`t2m.cli.setup`).

- WordNet 3.0 for METEOR: Debian's ``wordnet-base`` and ``wordnet-sense-index`` packages (apt-get, as
  root) put the database in ``/usr/share/wordnet``; it is copied into the project's nltk data directory as
  ``<nltk_data>/corpora/wordnet/`` together with the ``lexnames`` file nltk needs (Debian does not ship it;
  its 45 lines are the table of the lexnames(5WN) manual page). Copies, not symlinks: nltk refuses corpus
  files that resolve outside its data path. ``<nltk_data>`` is ``$T2M_NLTK_DATA`` or
  ``~/.cache/t2m/nltk_data`` (see :mod:`evaluation.wordnet`).
- the METEOR stem/synonym table for the SciBERT vocabulary, if that vocabulary is found (saves the
  first ``t2m eval`` of captions a few seconds).
- with ``--with-chromium``: Chromium and fonts (for the HTML report test).

Idempotent: what is already in place is checked and left alone, so a second run takes well under a second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from evaluation.meteor import MeteorScorer
from evaluation.text_tokenizer import TextTokenizer, TokenizerNotFoundError
from evaluation.wordnet import (
    REQUIRED_VERSION,
    WORDNET_FILES,
    find_wordnet,
    load_wordnet_reader,
    project_nltk_data_dir,
    read_wordnet_version,
)

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_PACKAGES = ("wordnet-base", "wordnet-sense-index")
CHROMIUM_PACKAGES = ("chromium", "fonts-dejavu-core", "fonts-liberation")

# lexnames(5WN): file number, lexicographer file name; the syntactic category (1 noun, 2 verb, 3 adj,
# 4 adv) follows from the name's prefix.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
)  # fmt: skip
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


class SetupError(RuntimeError):
    """A resource could not be installed; the message says what to do."""


def lexnames_text() -> str:
    """The ``lexnames`` file: ``NN<TAB>name<TAB>category`` for the 45 lexicographer files."""
    return "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def _log(msg: str) -> None:
    print(f"t2m setup: {msg}", file=sys.stderr, flush=True)


def _apt_candidate_known(package: str) -> bool:
    out = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True).stdout
    return "Candidate:" in out and "Candidate: (none)" not in out


def apt_install(packages: tuple[str, ...]) -> None:
    """apt-get install ``packages`` (running apt-get update first if apt does not know them). Root only."""
    if shutil.which("apt-get") is None:
        raise SetupError(f"apt-get not found: install {' '.join(packages)} with your system's package manager")
    if os.geteuid() != 0:
        raise SetupError(
            f"installing {' '.join(packages)} needs root: run `sudo t2m setup` "
            f"or `sudo apt-get install {' '.join(packages)}`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not all(_apt_candidate_known(p) for p in packages):
        _log("apt-get update (package lists do not know " + ", ".join(packages) + ")")
        subprocess.run(["apt-get", "update"], check=True, env=env)
    _log("apt-get install " + " ".join(packages))
    r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *packages], env=env)
    if r.returncode != 0:
        raise SetupError(f"apt-get install {' '.join(packages)} failed (exit {r.returncode}); see apt's output above")


def _debian_wordnet_complete(src: Path) -> bool:
    return all((src / f).is_file() for f in WORDNET_FILES if f != "lexnames")


def _wordnet_ready(target: Path) -> bool:
    return (
        all((target / f).is_file() for f in WORDNET_FILES)
        and (target / "lexnames").read_text(encoding="utf-8") == lexnames_text()
        and read_wordnet_version(target, False) == REQUIRED_VERSION
    )


def layout_wordnet(src: Path, nltk_data: Path) -> Path:
    """Copy Debian's WordNet files from ``src`` into ``<nltk_data>/corpora/wordnet`` (atomically) with lexnames."""
    target = nltk_data / "corpora" / "wordnet"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".wordnet."))
    try:
        for name in WORDNET_FILES:
            if name != "lexnames":
                shutil.copyfile(src / name, tmp / name)
        (tmp / "lexnames").write_text(lexnames_text(), encoding="utf-8")
        tmp.chmod(0o755)
        if target.exists():
            old = target.with_name(f".wordnet.old.{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def check_wordnet_with_nltk(nltk_data: Path) -> str:
    """Load the laid-out corpus with nltk and look a word up; returns a one-line description."""
    loc = find_wordnet()
    if loc is None or loc.root.resolve() != nltk_data.resolve():
        raise SetupError(f"WordNet in {nltk_data} is not the one t2m finds first ({loc.path if loc else 'none found'})")
    wn = load_wordnet_reader(loc)
    synonyms = sorted({lemma.name() for s in wn.synsets("acid") for lemma in s.lemmas()})
    if wn.get_version() != "3.0" or not synonyms:
        raise SetupError(f"nltk cannot read WordNet 3.0 from {loc.path}")
    return f"nltk reads WordNet {wn.get_version()} from {loc.path} (synonyms of 'acid': {', '.join(synonyms[:4])}, ...)"


def setup_wordnet(nltk_data: Path | None = None, use_apt: bool = True) -> Path:
    """Make WordNet 3.0 available as an nltk corpus in ``nltk_data``; returns the corpus directory."""
    nltk_data = Path(nltk_data) if nltk_data else project_nltk_data_dir()
    target = nltk_data / "corpora" / "wordnet"
    if _wordnet_ready(target):
        _log(f"WordNet 3.0 already in place: {target}")
        return target
    if not _debian_wordnet_complete(DEBIAN_WORDNET_DIR):
        if not use_apt:
            raise SetupError(
                f"{DEBIAN_WORDNET_DIR} lacks WordNet files and use_apt=False was given: install {' '.join(WORDNET_PACKAGES)}"
            )
        apt_install(WORDNET_PACKAGES)
        if not _debian_wordnet_complete(DEBIAN_WORDNET_DIR):
            raise SetupError(f"{' '.join(WORDNET_PACKAGES)} installed but {DEBIAN_WORDNET_DIR} is still incomplete")
    layout_wordnet(DEBIAN_WORDNET_DIR, nltk_data)
    if not _wordnet_ready(target):
        raise SetupError(f"{target} does not hold WordNet 3.0 after copying from {DEBIAN_WORDNET_DIR}")
    _log(f"WordNet 3.0 laid out in {target}")
    _log(check_wordnet_with_nltk(nltk_data))
    return target


def prepare_meteor_table() -> None:
    """Build (or find cached) the METEOR table for the default SciBERT vocabulary, if that vocabulary exists."""
    try:
        tok = TextTokenizer.load(None)
    except TokenizerNotFoundError:
        _log("SciBERT vocabulary not found: skipping the METEOR table (it is built on the first `t2m eval` instead)")
        return
    MeteorScorer.for_vocabulary(tok.vocabulary, tok.vocab_sha256)
    _log(f"METEOR table ready for {tok.name} (vocab sha256 {tok.vocab_sha256[:12]})")


def _dpkg_installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip().endswith("installed") and "not-installed" not in r.stdout


def _chromium_binary() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def setup_chromium() -> str:
    """Install Chromium and fonts where missing (a chromium already on PATH counts); returns its path."""
    missing = [p for p in CHROMIUM_PACKAGES if not (_dpkg_installed(p) or (p == "chromium" and _chromium_binary()))]
    if missing:
        apt_install(tuple(missing))
    path = _chromium_binary()
    if not path:
        raise SetupError("apt-get installed chromium but no `chromium` binary is on PATH")
    _log(f"Chromium ready: {path}" + ("" if missing else " (already installed, with fonts)"))
    return path


def setup(
    nltk_data: Path | None = None, use_apt: bool = True, with_chromium: bool = False, meteor_table: bool = True
) -> Path:
    """Everything ``t2m setup`` does; returns the WordNet corpus directory. Raises SetupError on failure."""
    target = setup_wordnet(nltk_data, use_apt=use_apt)
    if meteor_table:
        prepare_meteor_table()
    if with_chromium:
        setup_chromium()
    return target
