"""Calibrate acd.cost's characters-per-token rate (schemas/prices.yaml chars_per_token, tokens_per_word)
against a real GPT tokenizer, offline.

    python scripts/calibrate_tokens.py --bpe PATH/cl100k_base.tiktoken --run-dir RUN [--reference DIR]

--bpe: a tiktoken BPE file; its sha256 is checked against tiktoken's published hash for that encoding
(tiktoken_ext.openai_public), so a file from anywhere is only used when it is the real one. (gpt-4o's
o200k_base could not be obtained offline when this was run; cl100k_base, GPT-4's, was.)
Texts: the system and user texts of every request a planned run renders (RUN: after `acd estimate`), and the
captions and instructions of the official AnyCap release (its gpt_q_c / *.jsonl files). Prints the rate and
how far ceil(chars / rate) lands from the true count: over all texts, and per text (median, p90 of |error|).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
from pathlib import Path


def load_encoding(path: Path, name: str):
    import tiktoken
    import tiktoken_ext.openai_public as pub
    from tiktoken.load import load_tiktoken_bpe

    expected = {"cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"}[name]
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != expected:
        raise SystemExit(f"{path}: sha256 {got} is not tiktoken's {name} ({expected})")
    ranks = load_tiktoken_bpe(str(path), expected_hash=expected)
    return tiktoken.Encoding(name=name, pat_str=pub.CL100K_PAT_STR if hasattr(pub, "CL100K_PAT_STR") else
                             r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)""",
                             mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 100257})


def prompt_texts(run_dir: Path) -> list[str]:
    from acd.generate import _roles, _with_length
    from acd.pipeline import Build, recorded_recipe
    from acd.prompts import render

    build = Build(recorded_recipe(run_dir), run_dir, None)
    media = {m["media_key"]: dict(m, path=str(run_dir / m["uri"])) for m in build.media_table().to_pylist()}
    out = []
    for lot in build.lots():
        for pair in build.store.read_part("plan", lot).to_pylist():
            for role in _roles(pair):
                p = pair if role == "instruct" else dict(pair, instruction=_with_length("Describe it briefly.", pair))
                msgs, _, _ = render(role, p, media[pair["media_key"]], pair.get("rejection_strategy"), inline_media=False)
                out += [msgs[0]["content"]] + [c["text"] for c in msgs[1]["content"] if c.get("type") == "text"]
    return out


def release_texts(ref: Path, limit: int = 3000) -> list[str]:
    out = []
    for f in sorted(ref.glob("acd/*/gpt_q_c/*.jsonl")):
        for line in f.read_text().splitlines()[:limit // 20]:
            row = json.loads(line)
            out += [c["value"].replace("<image>\n", "").replace("<video>\n", "").replace("<audio>\n", "")
                    for c in row.get("conversations") or [] if isinstance(c.get("value"), str)]
    return out


def measure(enc, texts: list[str], rate: float) -> dict:
    true = [len(enc.encode(t, disallowed_special=())) for t in texts]
    est = [math.ceil(len(t) / rate) for t in texts]
    errs = sorted(abs(e - t) / t for e, t in zip(est, true) if t)
    words = sum(len(t.split()) for t in texts)
    return {"texts": len(texts), "chars_per_token": round(sum(map(len, texts)) / sum(true), 3),
            "tokens_per_word": round(sum(true) / words, 3),
            f"total_error_at_{rate:g}": round(sum(est) / sum(true) - 1, 4),
            "per_text_abs_error_median": round(statistics.median(errs), 4),
            "per_text_abs_error_p90": round(errs[int(0.9 * len(errs))], 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bpe", type=Path, required=True)
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--reference", type=Path, default=None)
    ap.add_argument("--rate", type=float, default=None, help="the rate to score (default: schemas/prices.yaml's)")
    a = ap.parse_args()
    from acd import paths
    from acd.cost import price_table

    enc = load_encoding(a.bpe, "cl100k_base")
    rate = a.rate or float(price_table()["chars_per_token"])
    out = {"tokenizer": "tiktoken cl100k_base (sha256 checked)",
           "prompts": measure(enc, prompt_texts(a.run_dir), rate),
           "release_texts": measure(enc, release_texts(a.reference or paths.REFERENCE_DIR), rate)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
