#!/usr/bin/env python
"""Reading kit: draw a blind-read sample from a built dataset and lay out its media for a human reader.

    .venv/bin/python scripts/reading_kit.py DATASET_DIR --run-dir RUN_DIR --out FOLDER --n 40 --salt SALT \
        [--exclude FILE_OR_FOLDER ...]

The draw (docs/reading.md):
  * only non-q-c-c pairs (is_qcc false) from DATASET_DIR/pairs/*.parquet;
  * stratified by modality, image 3 : video 3 : audio 2 (largest remainder; a modality short of pairs
    passes its unused places on);
  * within a modality, pairs are taken in order of sha256(salt + pair_id), so anyone with the dataset
    and the salt redraws the same sample;
  * pair ids listed in --exclude (verdict / template JSONL files of earlier reads, or folders of them)
    are skipped, so two reads never share a pair.

What it writes under FOLDER:
  pairs.md                 what the reader reads: instruction, Caption A (chosen), Caption B (rejected),
                           media paths; for audio also the grounding (the reader cannot hear a clip here,
                           so the grounding plus the spectrogram is the audio's truth). For image/video the
                           grounding is NOT printed: the reader judges against what the pixels show.
  media/                   images as PNG; videos as a contact sheet (a frame every 0.25 s, timestamp drawn
                           on each) plus first/middle/last frames; audio as a spectrogram with a time axis.
  grounding/<pair_id>.json every pair's grounding, for later reference (not for the read itself).
  verdicts_template.jsonl  one line per pair with its fields and empty verdict fields.
  draw.json                the salt, the rule and the allocation, so the draw can be checked and redone.
  READY                    touched last, so someone waiting on the folder knows it is complete.

Only the columns a reader may see are read from the pairs table: the check and judge columns are never
loaded, so nothing in the kit can leak them into what the reader sees.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import io
import json
import os
import sys
import tarfile
import wave
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

# The blind-read allocation named by the protocol (issue 21): image 3 : video 3 : audio 2.
WEIGHTS = {"image": 3, "video": 3, "audio": 2}
FRAME_STEP_S = 0.25
SHEET_COLS = 4

# The only pair columns read: what the reader and the verdict file need. Check/judge columns stay unread.
PAIR_COLUMNS = [
    "pair_id", "modality", "media_key", "instruction_type", "instruction", "chosen", "rejected",
    "rejection_strategy", "length_constraint", "length_key", "is_qcc", "split",
]
TEMPLATE_FIELDS = [
    "pair_id", "modality", "instruction_type", "instruction", "chosen", "rejected", "rejection_strategy",
    "length_constraint", "length_key", "is_qcc", "media_key", "grounding",
]


# ---------------------------------------------------------------- draw

def order_key(salt: str, pair_id: str) -> str:
    return hashlib.sha256((salt + pair_id).encode("utf-8")).hexdigest()


def allocate(n: int, available: dict[str, int], weights: dict[str, int] = WEIGHTS) -> dict[str, int]:
    """Largest-remainder split of n over the weighted modalities, capped by what is available.
    Ties break in the weights' order (image, video, audio) so the split is a pure function of n."""
    mods = [m for m in weights if available.get(m, 0) > 0]
    alloc = {m: 0 for m in weights}
    left = n
    while left > 0 and mods:
        total = sum(weights[m] for m in mods)
        quotas = {m: left * weights[m] / total for m in mods}
        share = {m: int(quotas[m]) for m in mods}
        rest = left - sum(share.values())
        for m in sorted(mods, key=lambda m: (-(quotas[m] - share[m]), list(weights).index(m)))[:rest]:
            share[m] += 1
        for m in mods:
            take = min(share[m], available[m] - alloc[m])
            alloc[m] += take
            left -= take
        mods = [m for m in mods if alloc[m] < available[m]]
    return alloc


def read_excluded(paths: list[str]) -> set[str]:
    """Pair ids from earlier reads: JSONL files (one object with pair_id a line) or folders of them."""
    ids: set[str] = set()
    for p in paths:
        path = Path(p)
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        if not files:
            raise SystemExit(f"--exclude {p}: no .jsonl files")
        for f in files:
            for line in f.read_text().splitlines():
                if line.strip():
                    ids.add(json.loads(line)["pair_id"])
    return ids


def load_pairs(dataset: Path) -> list[dict]:
    files = sorted(glob.glob(str(dataset / "pairs" / "*.parquet")))
    if not files:
        raise SystemExit(f"no pairs/*.parquet under {dataset}")
    rows: list[dict] = []
    for f in files:
        names = set(pq.read_schema(f).names)
        rows.extend(pq.read_table(f, columns=[c for c in PAIR_COLUMNS if c in names]).to_pylist())
    return rows


def draw(rows: list[dict], n: int, salt: str, excluded: set[str]) -> tuple[list[dict], dict[str, int]]:
    pool = [r for r in rows if not r.get("is_qcc") and r["pair_id"] not in excluded]
    by_mod: dict[str, list[dict]] = {}
    for r in pool:
        by_mod.setdefault(r["modality"], []).append(r)
    for m in by_mod:
        by_mod[m].sort(key=lambda r: order_key(salt, r["pair_id"]))
    alloc = allocate(n, {m: len(v) for m, v in by_mod.items()})
    picked = [r for m in WEIGHTS for r in by_mod.get(m, [])[: alloc[m]]]
    return picked, alloc


# ---------------------------------------------------------------- media

def index_tars(dataset: Path) -> dict[str, tuple[str, str]]:
    """media_key -> (tar path, member name) for every media member (the .json members are metadata)."""
    index: dict[str, tuple[str, str]] = {}
    for tar_path in sorted(glob.glob(str(dataset / "shards" / "*" / "*.tar"))):
        with tarfile.open(tar_path) as tf:
            for name in tf.getnames():
                key, _, ext = name.partition(".")
                if ext != "json":
                    index.setdefault(key, (tar_path, name))
    return index


def read_member(tar_path: str, name: str) -> bytes:
    with tarfile.open(tar_path) as tf:
        f = tf.extractfile(name)
        assert f is not None, (tar_path, name)
        return f.read()


def _font(size: int):
    for cand in ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"):
        try:
            return ImageFont.truetype(cand, size)
        except OSError:
            continue
    return ImageFont.load_default()


def _scaled(img: Image.Image, scale: int) -> Image.Image:
    img = img.convert("RGB")
    return img if scale == 1 else img.resize((img.width * scale, img.height * scale), Image.LANCZOS)


def save_image(data: bytes, out: Path, scale: int) -> list[Path]:
    path = out.with_suffix(".png")
    _scaled(Image.open(io.BytesIO(data)), scale).save(path)
    return [path]


def decode_video(data: bytes) -> tuple[list[tuple[float, Image.Image]], float]:
    import av  # PyAV bundles its own ffmpeg libraries; there is no ffmpeg binary here

    frames: list[tuple[float, Image.Image]] = []
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            t = float(frame.pts * frame.time_base) if frame.pts is not None else len(frames) / float(stream.average_rate or 1)
            frames.append((t, frame.to_image()))
        rate = float(stream.average_rate or 0)
    frames.sort(key=lambda x: x[0])
    step = (1.0 / rate) if rate else (frames[1][0] - frames[0][0] if len(frames) > 1 else 0.0)
    duration = frames[-1][0] + step if frames else 0.0
    return frames, duration


def _nearest(frames, t):
    return min(frames, key=lambda f: abs(f[0] - t))


def _label(img: Image.Image, text: str, size: int) -> Image.Image:
    img = img.copy()
    d = ImageDraw.Draw(img)
    font = _font(size)
    box = d.textbbox((0, 0), text, font=font)
    d.rectangle((0, 0, box[2] + 8, box[3] + 6), fill=(0, 0, 0))
    d.text((4, 2), text, fill=(255, 255, 0), font=font)
    return img


def save_video(data: bytes, out: Path, scale: int) -> tuple[list[Path], float]:
    frames, duration = decode_video(data)
    if not frames:
        raise ValueError("video has no frames")
    times = [round(i * FRAME_STEP_S, 2) for i in range(int(duration / FRAME_STEP_S + 1e-6) + 1)
             if i * FRAME_STEP_S <= frames[-1][0] + 1e-6]
    tiles = [_label(_scaled(_nearest(frames, t)[1], scale), f"{_nearest(frames, t)[0]:.2f}s", 11 * scale)
             for t in times]
    w, h = tiles[0].size
    pad = 4
    rows = -(-len(tiles) // SHEET_COLS)
    sheet = Image.new("RGB", (SHEET_COLS * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (pad + (i % SHEET_COLS) * (w + pad), pad + (i // SHEET_COLS) * (h + pad)))
    paths = [out.parent / f"{out.name}_sheet.png"]
    sheet.save(paths[0])
    # first / middle / last by frame index: the middle is the frame at half the clip, not a 0.25 s tick
    for tag, (t, img) in (("first", frames[0]), ("middle", frames[len(frames) // 2]), ("last", frames[-1])):
        p = out.parent / f"{out.name}_{tag}.png"
        _label(_scaled(img, scale), f"{tag} {t:.2f}s", 11 * scale).save(p)
        paths.append(p)
    return paths, duration


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        sr, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        raw = w.readframes(n)
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    x = np.frombuffer(raw, dtype=dtype).astype(np.float64)
    if width == 1:
        x = x - 128.0
    x = x.reshape(-1, ch).mean(axis=1) / float(2 ** (8 * width - 1))
    return x, sr


def save_audio(data: bytes, out: Path) -> tuple[list[Path], float]:
    import matplotlib

    matplotlib.use("Agg")  # no display here
    import matplotlib.pyplot as plt

    x, sr = read_wav(data)
    duration = len(x) / sr
    nfft, hop = 512, 128
    if len(x) < nfft:
        x = np.pad(x, (0, nfft - len(x)))
    win = np.hanning(nfft)
    starts = np.arange(0, len(x) - nfft + 1, hop)
    spec = np.abs(np.stack([np.fft.rfft(x[s:s + nfft] * win) for s in starts], axis=1))
    db = 20 * np.log10(spec + 1e-9)
    db = np.clip(db, db.max() - 80, None)
    # RMS envelope in 10 ms steps: a sound's start and stop read off it more precisely than off the colours
    step = max(1, sr // 100)
    rms = np.sqrt(np.array([np.mean(x[i:i + step] ** 2) for i in range(0, len(x), step)]) + 1e-12)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax1.imshow(db, origin="lower", aspect="auto", cmap="magma",
               extent=[0, (starts[-1] + nfft) / sr, 0, sr / 2 / 1000])
    ax1.set_ylabel("kHz")
    ax1.set_title(f"{out.name}  duration {duration:.2f} s  sr {sr} Hz")
    ax2.plot(np.arange(len(rms)) * step / sr, 20 * np.log10(rms), lw=0.8)
    ax2.set_ylabel("RMS dB")
    ax2.set_xlabel("time (s)")
    ax2.set_xticks(np.arange(0, duration + 1e-6, 0.25), minor=True)
    ax2.set_xticks(np.arange(0, duration + 1e-6, 0.5))
    for ax in (ax1, ax2):
        ax.grid(True, which="both", axis="x", alpha=0.3)
    fig.tight_layout()
    path = out.parent / f"{out.name}_spectrogram.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path], duration


# ---------------------------------------------------------------- grounding

def load_grounding(run_dir: Path | None, keys: set[str]) -> dict[str, str]:
    """media_key -> grounding JSON string, from the run's ingest parts."""
    out: dict[str, str] = {}
    if run_dir is None:
        return out
    for f in sorted(glob.glob(str(run_dir / "ingest" / "*" / "part-*.parquet"))):
        t = pq.read_table(f, columns=["media_key", "grounding"]).to_pylist()
        for r in t:
            if r["media_key"] in keys and r["grounding"]:
                out[r["media_key"]] = r["grounding"]
    return out


def grounding_from_sample(tar_path: str, key: str) -> str | None:
    """Fallback when no run dir is given: the sample json in the tar embeds the grounding."""
    try:
        sample = json.loads(read_member(tar_path, f"{key}.json"))
    except KeyError:
        return None
    g = sample.get("grounding")
    return json.dumps(g, sort_keys=True) if g else None


def audio_grounding_lines(g: dict) -> list[str]:
    lines = []
    for s in g.get("sounds", []):
        lines.append(
            f"  - {s.get('id', '?')}: {s.get('source', '?')}"
            + (f" ({s['pattern']})" if s.get("pattern") else "")
            + f", {s.get('start', '?')}–{s.get('end', '?')} s, loudness {s.get('loudness', '?')}, "
              f"pitch {s.get('pitch', '?')}" + (f", {s['category']}" if s.get("category") else ""))
    scene = g.get("scene") or {}
    if scene:
        lines.append("  - scene: " + ", ".join(f"{k} {v}" for k, v in sorted(scene.items())))
    return lines


# ---------------------------------------------------------------- main

def build(dataset: Path, run_dir: Path | None, out: Path, n: int, salt: str, exclude: list[str],
          scale: int = 2) -> list[dict]:
    excluded = read_excluded(exclude)
    rows = load_pairs(dataset)
    picked, alloc = draw(rows, n, salt, excluded)
    (out / "media").mkdir(parents=True, exist_ok=True)
    (out / "grounding").mkdir(parents=True, exist_ok=True)
    tars = index_tars(dataset)
    groundings = load_grounding(run_dir, {r["media_key"] for r in picked})

    md = [f"# Blind read: {len(picked)} pairs", "",
          f"Dataset `{dataset}`; salt `{salt}`; drawn by sha256(salt + pair_id) within each modality, "
          f"non-q-c-c only, image 3 : video 3 : audio 2 -> {alloc}; {len(excluded)} earlier pair ids "
          "excluded. Judge by docs/reading.md.", ""]
    template = []
    for i, r in enumerate(picked, 1):
        key = r["media_key"]
        if key not in tars:
            raise SystemExit(f"media {key} of pair {r['pair_id']} not in any shard")
        tar_path, member = tars[key]
        data = read_member(tar_path, member)
        stem = out / "media" / f"{i:03d}_{r['modality']}_{key[:12]}"
        duration = None
        if r["modality"] == "image":
            paths = save_image(data, stem, scale)
        elif r["modality"] == "video":
            paths, duration = save_video(data, stem, scale)
        else:
            paths, duration = save_audio(data, stem)
        g_str = groundings.get(key) or grounding_from_sample(tar_path, key) or ""
        g = json.loads(g_str) if g_str else {}
        (out / "grounding" / f"{r['pair_id']}.json").write_text(json.dumps(g, indent=1, sort_keys=True) + "\n")

        md += [f"## {i}. {r['modality']} · {r['instruction_type']} · `{r['pair_id']}`", "",
               f"**Instruction:** {r['instruction']}", ""]
        if r.get("length_constraint"):
            md += [f"**Length constraint:** {r['length_constraint']}", ""]
        md += [f"**Caption A (chosen):** {r['chosen']}", "", f"**Caption B (rejected):** {r['rejected']}", ""]
        md += ["**Media:** " + ", ".join(f"`{p}`" for p in paths)
               + (f" (duration {duration:.2f} s)" if duration is not None else ""), ""]
        if r["modality"] == "audio":
            md += ["**Grounding (audio truth):**"] + audio_grounding_lines(g) + [""]
        row = {f: r.get(f) for f in TEMPLATE_FIELDS if f != "grounding"}
        row["grounding"] = g_str
        row.update({"compliant": None, "natural": None, "rejected_worse": None, "reasons": [],
                    "reader": "", "salt": salt})
        template.append(row)

    (out / "pairs.md").write_text("\n".join(md))
    with open(out / "verdicts_template.jsonl", "w") as f:
        for row in template:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "draw.json").write_text(json.dumps({
        "dataset": str(dataset), "run_dir": str(run_dir) if run_dir else None, "salt": salt, "n": n,
        "rule": "non-q-c-c pairs; per modality ascending sha256(salt + pair_id); image 3 : video 3 : audio 2",
        "allocation": alloc, "excluded": len(excluded), "pair_ids": [r["pair_id"] for r in picked],
    }, indent=1) + "\n")
    (out / "READY").touch()
    return template


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--run-dir", type=Path, default=None, help="run dir whose ingest parts hold the grounding")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--salt", required=True)
    ap.add_argument("--exclude", action="append", default=[], nargs="+",
                    help="verdict/template JSONL files (or folders of them) of earlier reads")
    ap.add_argument("--scale", type=int, default=2, help="upscale images and frames for legibility")
    a = ap.parse_args(argv)
    if (a.out / "READY").exists():
        os.remove(a.out / "READY")  # a rebuilt folder is not ready until the new one is written
    rows = build(a.dataset, a.run_dir, a.out, a.n, a.salt, [p for grp in a.exclude for p in grp], a.scale)
    counts = {m: sum(r["modality"] == m for r in rows) for m in WEIGHTS}
    print(f"{len(rows)} pairs {counts} salt={a.salt} -> {a.out}/pairs.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
