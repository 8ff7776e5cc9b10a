"""The synthetic source: procedural images, videos and audio with exact grounding (the embedded default).

Config (a recipe's `source:`, the SyntheticSource model): {kind: synthetic, counts: {image: N, video: N, audio: N},
batch_size: 64}.
Item i of a modality is a pure function of (seed, modality, i) (see acd.synth), so batches are
independent units of work, and two builds give byte-identical media and media keys.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from acd.media.sniff import mime_of
from acd.records import dumps
from acd.sources.base import IngestResult, source_section, store_media
from acd.synth import MODALITIES

LICENCE = "CC0-1.0 (procedurally generated)"
EXT = {"image": "jpg", "video": "mp4", "audio": "wav"}


def _renderer(modality: str) -> Callable[[int, int], tuple[bytes, dict, dict]]:
    # Imported lazily: an image-only build never loads PyAV, an audio-free one never loads soundfile.
    if modality == "image":
        from acd.synth.image import render_image

        return render_image
    if modality == "video":
        from acd.synth.video import render_video

        return render_video
    from acd.synth.audio import render_audio

    return render_audio


class SyntheticSource:
    name = "synthetic"
    # Every item is its own procedural scene: deduplicated by bytes only (acd.dedup.near_mode says why).
    distinct_items = True

    def __init__(self, config: Any, seed: int):
        """`config`: the recipe's SyntheticSource section (acd.recipe_model), or a mapping of one; the model
        refuses unknown modalities, negative counts and a batch_size below 1."""
        config = source_section("synthetic", config)
        self.counts = {m: getattr(config.counts, m) for m in MODALITIES}
        self.batch_size = config.batch_size
        self.seed = int(seed)

    def batches(self) -> list[str]:
        out = []
        for m in MODALITIES:
            n_batches = -(-self.counts[m] // self.batch_size)
            out += [f"{m}-{b:04d}" for b in range(n_batches)]
        return out

    def items(self, batch: str) -> tuple[str, range]:
        """The modality and item indices a batch name stands for."""
        modality, _, num = batch.rpartition("-")
        if modality not in MODALITIES or not num.isdigit():
            raise ValueError(f"synthetic source: bad batch name {batch!r}")
        lo = int(num) * self.batch_size
        hi = min(lo + self.batch_size, self.counts[modality])
        if lo >= hi:
            raise ValueError(f"synthetic source: batch {batch!r} is beyond counts[{modality}]={self.counts[modality]}")
        return modality, range(lo, hi)

    def read(self, batch: str, media_dir: Path) -> IngestResult:
        modality, idx = self.items(batch)
        render = _renderer(modality)
        ext = EXT[modality]
        result = IngestResult()
        for i in idx:
            data, grounding, facts = render(self.seed, i)
            key, uri = store_media(data, ext, Path(media_dir))
            result.media.append({
                "media_key": key, "modality": modality, "source": self.name,
                "source_id": f"synthetic:{modality}:{i}", "uri": uri, "ext": ext, "mime": mime_of(ext),
                "bytes": len(data),
                "width": facts.get("width"), "height": facts.get("height"),
                "duration_s": facts.get("duration_s"), "fps": facts.get("fps"),
                "num_frames": facts.get("num_frames"),
                "sample_rate": facts.get("sample_rate"), "channels": facts.get("channels"),
                "licence": LICENCE, "grounding": dumps(grounding), "existing_captions": None,
            })
        return result
