"""Streaming ACM training data straight from the built WebDataset shards.

<out>/shards/<split>/<modality>-NNNNNN.tar holds one sample per media item (media bytes once + a `json`
member listing all of that item's pairs). The pipeline decodes each item once and expands it into its pairs,
so a video is decoded once for all of its instructions. q-a-c and q-c-c rows are mixed at a target ratio
(the paper: ~40% q-c-c, so the model learns to leave good captions alone).

Determinism (needed for exact resume): shard order and the shuffle buffer are driven by one
random.Random(seed + epoch); webdataset's own shuffling is off.
"""
from __future__ import annotations

import glob
import io
import json
import os
import random
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import webdataset as wds

from acd.acm.model import IGNORE
from acd.acm.tokenizer import ALIGNER_TEMPLATE, CaptionTokenizer

MEDIA_EXTS = {"image": ("jpg", "jpeg", "png", "webp"), "video": ("mp4", "webm", "avi", "mkv", "mov"),
              "audio": ("wav", "flac", "mp3", "ogg")}


# ------------------------------------------------------------------------------------------ media decode
def decode_image(data: bytes, size: int) -> torch.Tensor:
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB").resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def decode_video(data: bytes, size: int, frames: int) -> torch.Tensor:
    """`frames` frames sampled evenly over the clip -> [T, 3, size, size]; short clips repeat frames."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        decoded = [f.to_image() for f in container.decode(stream)]
    if not decoded:
        raise ValueError("video has no frames")
    idx = np.linspace(0, len(decoded) - 1, frames).round().astype(int)
    from PIL import Image

    out = [np.asarray(decoded[i].convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
           for i in idx]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def decode_audio(data: bytes, sample_rate: int, seconds: float) -> torch.Tensor:
    """Mono waveform at `sample_rate`, cut or zero-padded to `seconds` -> [samples]."""
    import soundfile as sf

    wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if sr != sample_rate:  # linear resampling: enough for a tiny encoder, no extra dependency
        n = int(round(len(wave) * sample_rate / sr))
        wave = np.interp(np.linspace(0, len(wave) - 1, n), np.arange(len(wave)), wave).astype(np.float32)
    target = int(sample_rate * seconds)
    wave = wave[:target] if len(wave) >= target else np.pad(wave, (0, target - len(wave)))
    return torch.from_numpy(np.ascontiguousarray(wave))


def decode_media(modality: str, data: bytes, mcfg: dict) -> torch.Tensor:
    if modality == "image":
        return decode_image(data, mcfg["image_size"])
    if modality == "video":
        return decode_video(data, mcfg["image_size"], mcfg["video_frames"])
    return decode_audio(data, mcfg["audio_sample_rate"], mcfg["audio_seconds"])


def blank_media(modality: str, mcfg: dict) -> torch.Tensor:
    """Stand-in when the media file is not available (the public benchmark ships no media)."""
    s = mcfg["image_size"]
    if modality == "image":
        return torch.zeros(3, s, s)
    if modality == "video":
        return torch.zeros(mcfg["video_frames"], 3, s, s)
    return torch.zeros(int(mcfg["audio_sample_rate"] * mcfg["audio_seconds"]))


def modality_of_path(path: str | Path) -> str:
    ext = Path(path).suffix.lower().lstrip(".")
    for m, exts in MEDIA_EXTS.items():
        if ext in exts:
            return m
    raise ValueError(f"cannot tell the modality of {path}")


# ------------------------------------------------------------------------------------------- the stream
def shard_urls(dataset_dir: str | Path, split: str = "train") -> list[str]:
    urls = sorted(glob.glob(str(Path(dataset_dir) / "shards" / split / "*.tar")))
    if not urls:
        raise FileNotFoundError(f"no WebDataset shards under {Path(dataset_dir) / 'shards' / split}")
    return urls


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _split_by_node_if_enough(urls):
    """wds.split_by_node, except with fewer shards than ranks: then every rank reads all shards and the
    examples are split instead (see iterate_examples), so no rank sits idle on a small dataset."""
    urls = list(urls)
    _, world = _dist_info()
    return wds.split_by_node(urls) if len(urls) >= world else iter(urls)


def _decode_sample(sample: dict, mcfg: dict) -> dict | None:
    meta = sample["json"]
    if isinstance(meta, (bytes, str)):
        meta = json.loads(meta)
    modality = meta["modality"]
    ext = meta.get("ext")
    if ext and ext in sample:
        return {"meta": meta, "media": decode_media(modality, sample[ext], mcfg)}
    for ext in MEDIA_EXTS[modality]:
        if ext in sample:
            return {"meta": meta, "media": decode_media(modality, sample[ext], mcfg)}
    return None  # no media member: skipped (the shard writer quarantines such items)


def mix_qcc(pairs: Iterable[dict], ratio: float | None) -> Iterator[dict]:
    """Yield training rows with about `ratio` of them q-c-c (existing caption == chosen).

    q-a-c pairs always go in; after one, a q-c-c copy of it (a := c) is added while the running q-c-c share
    is below `ratio`; the dataset's own q-c-c rows are dropped while the share is above it. So the stream
    approaches the ratio whatever share the build used. ratio=None keeps the rows as they are.
    """
    n = n_qcc = 0
    for p in pairs:
        qcc = bool(p.get("is_qcc")) or p.get("rejected") == p.get("chosen")
        if ratio is None:
            yield {**p, "is_qcc": qcc}
            continue
        if qcc:
            if (n_qcc + 1) / (n + 1) <= ratio + 1e-9 or n == 0 and ratio > 0:
                n, n_qcc = n + 1, n_qcc + 1
                yield {**p, "is_qcc": True}
            continue
        n += 1
        yield {**p, "is_qcc": False}
        if (n_qcc + 1) / (n + 1) <= ratio + 1e-9:
            n, n_qcc = n + 1, n_qcc + 1
            yield {**p, "rejected": p["chosen"], "is_qcc": True, "pair_id": f"{p.get('pair_id')}:qcc"}


def iterate_examples(urls: list[str], mcfg: dict, *, epoch: int = 0, seed: int = 0, qcc_ratio: float | None = 0.4,
                     shuffle_buffer: int = 256) -> Iterator[dict]:
    """One epoch of training examples: {modality, media, instruction, existing, chosen, is_qcc, ...}."""
    rng = random.Random(seed * 100_003 + epoch)
    urls = list(urls)
    rng.shuffle(urls)
    ds = (wds.WebDataset(urls, shardshuffle=False, nodesplitter=_split_by_node_if_enough,
                         workersplitter=wds.split_by_worker, empty_check=False)
          .decode()  # only the json member is decoded by webdataset; media bytes are decoded by us below
          .map(lambda s: _decode_sample(s, mcfg))
          .select(lambda s: s is not None))
    rank, world = _dist_info()
    split_examples = world > 1 and len(urls) < world

    def pairs():
        for sample in ds:
            meta = sample["meta"]
            for p in meta.get("pairs", []):
                if not p.get("instruction") or not p.get("chosen"):
                    continue
                yield {"modality": meta["modality"], "media_key": meta.get("media_key"), "media": sample["media"],
                       "instruction": p["instruction"], "chosen": p["chosen"],
                       "rejected": p.get("rejected") or p["chosen"], "is_qcc": p.get("is_qcc", False),
                       "pair_id": p.get("pair_id"), "instruction_type": p.get("instruction_type")}

    buf: list[dict] = []
    i = 0
    for row in mix_qcc(pairs(), qcc_ratio):
        i += 1
        if split_examples and (i - 1) % world != rank:
            continue
        ex = {**row, "existing": row["rejected"]}
        if shuffle_buffer <= 1:
            yield ex
            continue
        buf.append(ex)
        if len(buf) >= shuffle_buffer:
            yield buf.pop(rng.randrange(len(buf)))
    rng.shuffle(buf)
    yield from buf


class ShardStream(torch.utils.data.IterableDataset):
    """An IterableDataset over iterate_examples; set_epoch() before each pass (like DistributedSampler)."""

    def __init__(self, urls, mcfg, *, seed=0, qcc_ratio=0.4, shuffle_buffer=256):
        self.urls, self.mcfg, self.seed, self.qcc_ratio, self.shuffle_buffer = urls, mcfg, seed, qcc_ratio, shuffle_buffer
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iterate_examples(self.urls, self.mcfg, epoch=self.epoch, seed=self.seed, qcc_ratio=self.qcc_ratio,
                                shuffle_buffer=self.shuffle_buffer)


# -------------------------------------------------------------------------------------------- text side
_HEAD, _TAIL = ALIGNER_TEMPLATE.split("{caption}")
_Q_HEAD, _Q_TAIL = _HEAD.split("{instruction}")


def prompt_ids(tok: CaptionTokenizer, instruction: str, existing: str, max_tokens: int) -> list[int]:
    """[bos] + the aligner prompt + [bos]; the existing caption (then the instruction) is cut to fit, never the
    template itself, so the model always sees the full task wording."""
    return prompt_with_sources(tok, instruction, existing, max_tokens)[0]


def prompt_with_sources(tok: CaptionTokenizer, instruction: str, existing: str,
                        max_tokens: int) -> tuple[list[int], list[int]]:
    """prompt_ids and a same-length list marking what the copy head may point at: 1 on the existing caption
    a's tokens, 2 on the position just after a (pointing there copies the end of the caption: eos), 0
    elsewhere. Not the template (its words never belong in a caption) and not q: an undertrained head
    copied the instruction's wording ("The generated caption's length needs to be ...") into the caption.
    The end marker matters: without it "copy a to its end, then stop" needs the LM to pick eos by itself,
    and greedy decoding stopped after a's first sentence (eos out-scored every single continuation)."""
    head, q, mid, a, tail = (tok.encode(_Q_HEAD), tok.encode(instruction.strip()), tok.encode(_Q_TAIL),
                             tok.encode(existing.strip()), tok.encode(_TAIL))
    budget = max_tokens - 2 - len(head) - len(mid) - len(tail)
    q = q[: max(budget // 2, budget - len(a))]
    a = a[: max(0, budget - len(q))]
    # A second bos marks where the answer starts (the role marker of a chat template): without it the
    # prompt's closing "." looks like a caption's end and an undertrained model emits eos at once.
    ids = [tok.bos_id] + head + q + mid + a + tail + [tok.bos_id]
    src = [0] * (1 + len(head) + len(q) + len(mid)) + [1] * len(a) + [2] + [0] * len(tail)
    return ids, src


def collate(examples: list[dict], tok: CaptionTokenizer, mcfg: dict, *, for_generation: bool = False) -> dict:
    """Token ids + labels (-100 everywhere except the chosen caption and its eos) + media grouped by modality,
    and copy_mask (see prompt_with_sources: 1 on the existing caption's tokens, 2 on its end).

    Training batches are right-padded; generation batches are left-padded so every prompt ends at the last
    position, where decoding continues.
    """
    seqs, labs, srcs = [], [], []
    for ex in examples:
        p, src = prompt_with_sources(tok, ex["instruction"], ex["existing"], mcfg["max_prompt_tokens"])
        if for_generation:
            seqs.append(p)
            labs.append([IGNORE] * len(p))
        else:
            c = tok.encode(ex["chosen"].strip())[: mcfg["max_target_tokens"]] + [tok.eos_id]
            seqs.append(p + c)
            labs.append([IGNORE] * len(p) + c)
        srcs.append(src + [0] * (len(seqs[-1]) - len(src)))
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tok.pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    copy_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, l, c) in enumerate(zip(seqs, labs, srcs)):
        sl = slice(width - len(s), width) if for_generation else slice(0, len(s))
        ids[i, sl], labels[i, sl], mask[i, sl] = torch.tensor(s), torch.tensor(l), 1
        copy_mask[i, sl] = torch.tensor(c, dtype=torch.long)
    media, index = {}, {}
    for m in ("image", "video", "audio"):
        rows = [i for i, ex in enumerate(examples) if ex["modality"] == m]
        if rows:
            media[m] = torch.stack([examples[i]["media"] for i in rows])
            index[m] = torch.tensor(rows, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "media": media, "media_index": index,
            "copy_mask": copy_mask}


def dataset_texts(dataset_dir: str | Path, split: str = "train") -> Iterator[str]:
    """Every instruction and caption of a built dataset (tokenizer training): the Parquet pairs table when
    present, else the shards' json members."""
    files = sorted(glob.glob(str(Path(dataset_dir) / "pairs" / f"{split}-*.parquet")))
    if files:
        import pyarrow.parquet as pq

        for f in files:
            t = pq.read_table(f, columns=["instruction", "chosen", "rejected"])
            for col in t.column_names:
                yield from (v for v in t.column(col).to_pylist() if v)
        return
    # every rank reads every text (each trains the same tokenizer): an identity nodesplitter
    for sample in wds.WebDataset(shard_urls(dataset_dir, split), shardshuffle=False, empty_check=False,
                                 nodesplitter=lambda urls: urls).decode():
        meta = sample["json"]
        for p in meta.get("pairs", []):
            for k in ("instruction", "chosen", "rejected"):
                if p.get(k):
                    yield p[k]


def dataset_qcc_ratio(dataset_dir: str | Path) -> float | None:
    """The recipe's q-c-c share if the build recorded it (manifest.json / README front matter), else None."""
    man = Path(dataset_dir) / "manifest.json"
    if man.exists():
        try:
            data = json.loads(man.read_text())
            for key in ("qcc_share", "recipe.qcc_share"):
                if key in data:
                    return float(data[key])
            if isinstance(data.get("recipe"), dict) and "qcc_share" in data["recipe"]:
                return float(data["recipe"]["qcc_share"])
        except (ValueError, TypeError):
            pass
    return None


def env_world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) as torchrun sets them."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
