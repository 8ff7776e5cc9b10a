"""Real photographs (scikit-image's bundled samples, no download) through all three real sources: the same
photo must get the same media_key whichever way it arrives, with the right probe facts."""
from __future__ import annotations

import csv
import hashlib
import io
import json

import datasets
import pytest
from PIL import Image

skdata = pytest.importorskip("skimage.data")

from acd.sources.factory import iter_all, make_source  # noqa: E402

# Bundled in the scikit-image wheel (checked offline). "cat" is the same picture as "chelsea", so it is not used.
PHOTOS = {"astronaut": "png", "coffee": "jpg", "chelsea": "jpg", "rocket": "png", "hubble_deep_field": "jpg",
          "immunohistochemistry": "png", "camera": "png"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    out = {}
    for name, ext in PHOTOS.items():
        im = Image.fromarray(getattr(skdata, name)())
        buf = io.BytesIO()
        im.save(buf, "JPEG" if ext == "jpg" else "PNG", **({"quality": 90} if ext == "jpg" else {}))
        rel = f"{'sky' if name == 'hubble_deep_field' else 'earth'}/{name}.{ext}"
        (root / rel).parent.mkdir(exist_ok=True)
        (root / rel).write_bytes(buf.getvalue())
        out[rel] = (im.size, im.mode, buf.getvalue())
    return root, out


def run(config, media_dir):
    media, quarantine = [], []
    for res in iter_all(make_source(config, 0), media_dir):
        media += res.media
        quarantine += res.quarantine
    return media, quarantine


def test_three_sources_agree_on_real_photos(photos, tmp_path):
    root, files = photos
    media_dir = tmp_path / "run" / "media"

    folder, q1 = run({"kind": "folder", "root": str(root)}, media_dir)

    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "caption", "license"])
        for rel in sorted(files):
            w.writerow([rel, f"a photo of {rel.split('/')[1].split('.')[0]}", "bsd-3-clause"])
    manifest, q2 = run({"kind": "manifest", "path": str(root / "manifest.csv")}, media_dir)

    rels = sorted(files)
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": files[r][2], "path": r.split("/")[1]} for r in rels], "caption": rels},
        features=datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")}))
    ds.save_to_disk(str(tmp_path / "hfds"))
    hf, q3 = run({"kind": "hf", "path": str(tmp_path / "hfds"), "caption_column": "caption"}, media_dir)

    assert q1 == q2 == q3 == []
    assert len(folder) == len(manifest) == len(hf) == len(files)
    key_folder = {m["source_id"]: m["media_key"] for m in folder}
    key_manifest = {m["source_id"].split(":", 2)[2]: m["media_key"] for m in manifest}
    key_hf = {rels[int(m["source_id"].split(":")[1])]: m["media_key"] for m in hf}
    assert key_folder == key_manifest == key_hf  # dedup across sources: one key per photo
    stored = [p for p in media_dir.rglob("*") if p.is_file()]
    assert len(stored) == len(files)  # each photo stored once for three sources

    for m in folder + manifest + hf:
        assert m["modality"] == "image" and m["grounding"] is None
    by = {m["source_id"]: m for m in folder}
    for rel, (size, mode, data) in files.items():
        m = by[rel]
        assert (m["width"], m["height"]) == size
        if mode == "RGB":  # already RGB, under the size cap: stored byte-for-byte
            assert m["bytes"] == len(data) and m["media_key"] == hashlib.sha256(data).hexdigest()
        else:  # greyscale "camera": converted to RGB, re-encoded
            assert Image.open(media_dir.parent / m["uri"]).mode == "RGB"
    assert json.loads(manifest[0]["existing_captions"])[0].startswith("a photo of")
    assert {m["licence"] for m in manifest} == {"bsd-3-clause"}
    assert sorted(json.loads(m["existing_captions"])[0] for m in hf) == rels
