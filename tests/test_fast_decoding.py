"""t2m.decoding.fast runs on the transformers minor version it is tested with (it patches transformers
internals): setup.cfg pins that minor, and any other fails loudly, naming the fix. The decoding itself is
tested in tests/test_translate.py (same beams as transformers' own beam search)."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from t2m.decoding import fast as fast_decoding
from t2m.decoding.fast import TRANSFORMERS_MINOR, check_transformers_version, transformers_pin

ROOT = Path(__file__).resolve().parents[1]


def test_the_installed_transformers_is_the_minor_fast_decoding_is_tested_with():
    check_transformers_version()  # on another minor: RuntimeError saying what to install or change


def test_setup_cfg_pins_the_minor_fast_decoding_is_tested_with():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    requires = [line.strip() for line in config["options"]["install_requires"].splitlines()]
    pins = [line for line in requires if line.startswith("transformers")]
    assert pins == [transformers_pin()], (
        f"setup.cfg pins {pins}, t2m/decoding/fast.py is tested with {transformers_pin()}: change them together")


def test_another_minor_fails_naming_the_fix():
    major, minor = TRANSFORMERS_MINOR
    check_transformers_version(f"{major}.{minor}.3")
    for other in (f"{major}.{minor + 1}.0", f"{major}.{minor - 1}.2", f"{major + 1}.0.0.dev0"):
        with pytest.raises(RuntimeError, match=r"pip install 'transformers>=\d+\.\d+,<\d+\.\d+'.*TRANSFORMERS_MINOR"):
            check_transformers_version(other)


def test_fast_decoding_checks_the_version_when_it_is_enabled(monkeypatch):
    class Config:
        is_encoder_decoder = True

    class Model:
        config = Config()

    def refuse(version=None):
        raise RuntimeError("transformers 9.9.9 is installed")

    monkeypatch.setattr(fast_decoding, "check_transformers_version", refuse)
    with pytest.raises(RuntimeError, match="9.9.9"), fast_decoding.fast_decoding(Model(), 4):
        pass
    Config.is_encoder_decoder = False  # a decoder-only model is left alone: nothing is patched
    with fast_decoding.fast_decoding(Model(), 4) as options:
        assert options == {}
