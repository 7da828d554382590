"""The console's vendored files are exactly what `scripts/vendor-refresh` recorded, licences included."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
VENDOR = ROOT / "src" / "hypereal" / "web" / "static" / "vendor"
TEMPLATES = ROOT / "src" / "hypereal" / "web" / "templates"


def test_the_checked_in_files_match_the_manifest() -> None:
    checked = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "vendor-refresh"), "--check"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_package_ships_its_licence_and_a_pinned_version() -> None:
    manifest = json.loads((VENDOR / "manifest.json").read_text())
    assert manifest["packages"]
    for name, entry in manifest["packages"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", entry["version"]), name
        assert entry["integrity"].startswith("sha512-"), name
        assert any("LICENSE" in target for target in entry["files"]), f"{name} has no licence file"


def test_pages_load_scripts_only_from_this_server() -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert not re.search(r"""<script(?![^>]*\bsrc=)(?![^>]*type="application/json")""", text), template.name
        assert not re.search(r"""src="(https?:)?//|<link[^>]*href="(https?:)?//""", text), template.name
        for name in re.findall(r"asset\('([^']+)'\)", text):
            assert (VENDOR.parent / name).is_file(), f"{template.name} loads {name}, which is not shipped"
