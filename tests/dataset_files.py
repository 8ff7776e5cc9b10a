"""What a built dataset is, byte for byte: every file its manifest lists, plus the manifest itself.
Tests that compare two builds of one recipe (Dask vs one process, flow vs CLI) compare these."""
from __future__ import annotations

import json
from pathlib import Path


def manifest_files(out: Path) -> dict[str, bytes]:
    manifest = json.loads((out / "manifest.json").read_text())
    files = {f["path"]: (out / f["path"]).read_bytes() for f in manifest["files"]}
    files["manifest.json"] = (out / "manifest.json").read_bytes()
    return files
