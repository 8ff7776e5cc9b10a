"""The aligner prompt (as the release writes it) and the tokenizer the tiny default trains on captions.

The prompt text is the official release's, byte for byte (checked against reference/anycap/acd in the
tests): the media placeholder line (`<image>\n`) is dropped from the text because the model prepends the
media tokens itself, which is where InternVL substitutes the placeholder anyway.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ALIGNER_TEMPLATE = (
    "You are a multimodal aligner, and your task is to transform the existing caption into a caption that "
    "better meets the requirements. The requirement is: '{instruction}'.The existing caption is: "
    "'{caption}'. You only need to answer the caption that better meets the requirements, and do not add "
    "anything else."
)
MEDIA_PLACEHOLDER = {"image": "<image>", "video": "<video>", "audio": "<audio>"}

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = [PAD, BOS, EOS, UNK]


def aligner_prompt(instruction: str, caption: str) -> str:
    return ALIGNER_TEMPLATE.format(instruction=instruction.strip(), caption=caption.strip())


def release_human_turn(modality: str, instruction: str, caption: str) -> str:
    """The human turn exactly as the release's conversation files hold it (placeholder included)."""
    return f"{MEDIA_PLACEHOLDER[modality]}\n" + aligner_prompt(instruction, caption)


class CaptionTokenizer:
    """A thin wrapper over a `tokenizers.Tokenizer` (byte-level BPE: no text is ever out of vocabulary).

    Also wraps a HF tokenizer (AutoTokenizer from a local LM path) behind the same four members, so the
    model and data code never care which one they hold.
    """

    def __init__(self, tok: Tokenizer | None = None, hf=None):
        self._tok, self._hf = tok, hf
        if hf is not None:
            self.pad_id = hf.pad_token_id if hf.pad_token_id is not None else hf.eos_token_id
            self.bos_id = hf.bos_token_id if hf.bos_token_id is not None else hf.eos_token_id
            self.eos_id = hf.eos_token_id
            self.vocab_size = len(hf)
        else:
            self.pad_id, self.bos_id, self.eos_id = (tok.token_to_id(t) for t in (PAD, BOS, EOS))
            self.vocab_size = tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        if self._hf is not None:
            return self._hf.encode(text, add_special_tokens=False)
        return self._tok.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = [i for i in ids if i not in (self.pad_id, self.bos_id, self.eos_id)]
        if self._hf is not None:
            return self._hf.decode(ids, skip_special_tokens=True)
        return self._tok.decode(ids)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._hf is not None:
            self._hf.save_pretrained(directory)
        else:
            self._tok.save(str(directory / "tokenizer.json"))
        (directory / "acm_tokenizer.json").write_text(json.dumps({"kind": "hf" if self._hf else "bpe"}))

    @classmethod
    def load(cls, directory: str | Path) -> "CaptionTokenizer":
        directory = Path(directory)
        kind = json.loads((directory / "acm_tokenizer.json").read_text())["kind"]
        if kind == "hf":
            return cls.from_pretrained(directory)
        return cls(Tokenizer.from_file(str(directory / "tokenizer.json")))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "CaptionTokenizer":
        from transformers import AutoTokenizer

        return cls(hf=AutoTokenizer.from_pretrained(str(path), local_files_only=True))

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 2000, min_frequency: int = 2) -> "CaptionTokenizer":
        """Byte-level BPE trained on the dataset's own text (captions + instructions + prompt).

        The prompt template goes in too so its fixed words become single tokens (shorter sequences).
        """
        tok = Tokenizer(models.BPE(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
        )

        def corpus():
            for _ in range(8):  # the template weighs like a frequent sentence
                yield ALIGNER_TEMPLATE
            yield from texts

        tok.train_from_iterator(corpus(), trainer=trainer)
        return cls(tok)
