"""Refine a caption with a trained ACM checkpoint.

    python -m acd.acm.infer --ckpt runs/acm/demo-tiny --media x.jpg --instruction "..." --caption "..."
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from acd.acm.data import blank_media, collate, decode_media, modality_of_path
from acd.acm.train import load_checkpoint


class Refiner:
    """Loads a checkpoint once; refine()/refine_batch() turn (media, q, a) into the improved caption."""

    def __init__(self, ckpt: str | Path, device: str | None = None, max_new_tokens: int | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.tok, self.cfg = load_checkpoint(ckpt, map_location=self.device)
        self.model.to(self.device).eval()
        self.mcfg = self.cfg["model"]
        self.max_new_tokens = max_new_tokens or self.mcfg["max_target_tokens"]

    def load_media(self, media: str | Path | bytes | None, modality: str | None = None) -> tuple[str, torch.Tensor]:
        """A path (modality from the extension), raw bytes (modality required), or None (a blank stand-in)."""
        if media is None or (isinstance(media, (str, Path)) and not Path(media).exists()):
            if modality is None:
                raise ValueError("missing media needs an explicit modality")
            return modality, blank_media(modality, self.mcfg)
        if isinstance(media, (str, Path)):
            modality = modality or modality_of_path(media)
            media = Path(media).read_bytes()
        return modality, decode_media(modality, media, self.mcfg)

    def refine_batch(self, items: list[dict]) -> list[str]:
        """items: {media, modality?, instruction, caption}."""
        examples = []
        for it in items:
            modality, tensor = self.load_media(it.get("media"), it.get("modality"))
            examples.append({"modality": modality, "media": tensor, "instruction": it["instruction"],
                             "existing": it["caption"]})
        batch = collate(examples, self.tok, self.mcfg, for_generation=True)
        batch.pop("labels")
        batch = {k: ({m: t.to(self.device) for m, t in v.items()} if isinstance(v, dict) else v.to(self.device))
                 for k, v in batch.items()}
        out = self.model.generate(**batch, max_new_tokens=self.max_new_tokens)
        return [self.tok.decode(ids).strip() for ids in out]

    def refine(self, media, instruction: str, caption: str, modality: str | None = None) -> str:
        return self.refine_batch([{"media": media, "modality": modality, "instruction": instruction,
                                   "caption": caption}])[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="acd.acm.infer", description="Refine a caption with an ACM checkpoint.")
    ap.add_argument("--ckpt", required=True, help="checkpoint dir or run dir")
    ap.add_argument("--media", required=True, help="image / video / audio file")
    ap.add_argument("--instruction", required=True)
    ap.add_argument("--caption", required=True, help="the existing caption to improve")
    ap.add_argument("--modality", choices=["image", "video", "audio"], default=None)
    ap.add_argument("--max-new-tokens", type=int, default=None)
    a = ap.parse_args(argv)
    r = Refiner(a.ckpt, max_new_tokens=a.max_new_tokens)
    print(r.refine(a.media, a.instruction, a.caption, a.modality))
    return 0


if __name__ == "__main__":
    sys.exit(main())
