"""What a non-editable install needs: package data that exists and is found with importlib.resources, and
no library path computed from where the checkout is.

The full check (``pip install .`` into a fresh virtualenv, then ``t2m translate`` and ``t2m data download
chebi20 --from DIR`` from another folder) is in docs/architecture.md; it takes minutes, so it is not run here.
"""

from __future__ import annotations

import ast
import configparser
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY_PACKAGES = ("t2m", "datastore", "evaluation")
# Modules that still compute a path from their own file to reach outside the package. Shrinking list.
CHECKOUT_PATHS_ALLOWED: set[str] = set()


def test_every_package_data_pattern_matches_a_file():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    for package, patterns in config["options.package_data"].items():
        folder = ROOT.joinpath(*package.split("."))
        for pattern in (p.strip() for p in patterns.replace("\n", ",").split(",") if p.strip()):
            assert list(folder.glob(pattern)), f"setup.cfg package_data {package} = {pattern}: matches no file in {folder}"


def test_manifests_are_package_resources():
    from t2m import download

    assert (resources.files("t2m.manifests") / "chebi20.json").is_file()
    assert "chebi20" in download.known_manifests()
    assert download.load_manifest("chebi20")["name"] == "chebi20"


def _reaches_outside(tree: ast.AST) -> bool:
    """True when the module uses ``Path(__file__)...parents[N]`` / ``.parent.parent`` (a path above its package)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents":
            if "__file__" in ast.unparse(node):
                return True
        if isinstance(node, ast.Attribute) and node.attr == "parent" and "__file__" in ast.unparse(node):
            if ast.unparse(node).count(".parent") >= 2:
                return True
    return False


def test_no_library_path_computed_from_the_checkout():
    found = set()
    for package in LIBRARY_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if _reaches_outside(ast.parse(path.read_text(encoding="utf-8"))):
                found.add(path.relative_to(ROOT).as_posix())
    new = sorted(found - CHECKOUT_PATHS_ALLOWED)
    assert not new, ("these modules compute a path outside their package from __file__; an installed package has no "
                     "checkout around it (use importlib.resources, an argument or an environment variable): "
                     + ", ".join(new))
    fixed = sorted(CHECKOUT_PATHS_ALLOWED - found)
    assert not fixed, f"delete from CHECKOUT_PATHS_ALLOWED: {', '.join(fixed)}"
