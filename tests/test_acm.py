"""ACM: prompt fidelity, model shapes, loss masking, q-c-c mixing, a tiny training run, checkpoints, resume."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from acd.acm.data import collate, iterate_examples, mix_qcc, shard_urls
from acd.acm.model import IGNORE, load_config
from acd.acm.tokenizer import CaptionTokenizer, release_human_turn
from acd.acm.toydata import make_toy_dataset
from acd.paths import REFERENCE_DIR

# A smaller-than-default model so the whole file runs in well under a minute on 2 CPU cores.
SMALL = {"model": {"lm": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                          "intermediate_size": 128},
                   "encoder": {"image": {"dim": 32}, "video": {"dim": 32}, "audio": {"dim": 32}},
                   "projector": {"hidden": 64}, "tokenizer": {"vocab_size": 600}},
         "train": {"batch_size": 6, "log_every": 5, "save_every": 1000, "warmup_steps": 5, "lr": 3e-3,
                   "shuffle_buffer": 64}}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return make_toy_dataset(tmp_path_factory.mktemp("acd"))


def _cfg():
    from acd.merge import deep_merge

    return deep_merge(load_config("tiny"), SMALL)


def _model_and_tok(toy):
    from acd.acm.train import build_model, build_tokenizer

    cfg = _cfg()
    tok = build_tokenizer(cfg, toy, "train")
    torch.manual_seed(0)
    return build_model(cfg, tok), tok, cfg


def test_prompt_is_the_release_text():
    files = sorted((REFERENCE_DIR / "acd").glob("*/q*c*/**/*.jsonl")) if REFERENCE_DIR.exists() else []
    if not files:
        pytest.skip(f"reference release not found at {REFERENCE_DIR} (set ACD_REFERENCE)")
    rx = re.compile(r"^<(image|video|audio)>\nYou are .*?The requirement is: '(.*)'\.The existing caption is: "
                    r"'(.*)'\. You only need", re.S)
    checked = 0
    for f in files:
        for line in f.read_text().splitlines()[:5]:
            human = json.loads(line)["conversations"][0]["value"]
            m = rx.match(human)
            if m and "'" not in m.group(2) + m.group(3):  # quotes inside make the split ambiguous
                assert release_human_turn(m.group(1), m.group(2), m.group(3)) == human
                checked += 1
    assert checked >= 20


def test_forward_backward_shapes_and_frozen_encoder(toy):
    model, tok, cfg = _model_and_tok(toy)
    all_ex = list(iterate_examples(shard_urls(toy), cfg["model"], shuffle_buffer=0))
    by_mod = {m: [e for e in all_ex if e["modality"] == m] for m in ("image", "video", "audio")}
    ex = by_mod["image"][:2] + by_mod["video"][:1] + by_mod["audio"][:1]  # a mixed-modality batch
    batch = collate(ex, tok, cfg["model"])
    out = model(**batch)
    n_media = cfg["model"]["n_media_tokens"]
    assert n_media > 0 and out["logits"].shape == (4, batch["input_ids"].shape[1], tok.vocab_size)  # text positions
    out["loss"].backward()
    assert all(p.grad is None for p in model.encoders.parameters())
    for m in ("image", "video", "audio"):
        assert model.projectors[m][0].weight.grad.abs().sum() > 0, m
    assert model.lm.get_input_embeddings().weight.grad.abs().sum() > 0


def test_loss_only_on_chosen_tokens(toy):
    model, tok, cfg = _model_and_tok(toy)
    ex = next(iterate_examples(shard_urls(toy), cfg["model"], qcc_ratio=None, shuffle_buffer=0))
    batch = collate([ex], tok, cfg["model"])
    labels = batch["labels"][0]
    kept = labels[labels != IGNORE].tolist()
    assert kept == tok.encode(ex["chosen"]) + [tok.eos_id]  # c and its eos, nothing else
    assert tok.decode(kept) == ex["chosen"]
    # the labelled tokens are the last ones of the sequence: the prompt (q, a) carries no loss
    n = len(kept)
    assert (labels[:-n] == IGNORE).all()
    # changing the target changes the loss; the loss on a batch where c is unlabelled is undefined (nan)
    masked = dict(batch, labels=torch.full_like(batch["labels"], IGNORE))
    assert torch.isnan(model(**masked)["loss"])


def test_copy_mask_marks_the_existing_caption_and_its_end(toy):
    _, tok, cfg = _model_and_tok(toy)
    ex = {"modality": "image", "media": torch.zeros(3, 64, 64), "instruction": "Describe the red kite briefly.",
          "existing": "A red kite flies over a green field.", "chosen": "A red kite flies high."}
    batch = collate([ex], tok, cfg["model"])
    ids, cm = batch["input_ids"][0], batch["copy_mask"][0]
    assert tok.decode(ids[cm == 1].tolist()) == ex["existing"]  # a's tokens, not q's, not the template's
    end = (cm == 2).nonzero().flatten().tolist()
    assert len(end) == 1 and cm[end[0] - 1] == 1  # one end marker, right after a
    gen = collate([ex], tok, cfg["model"], for_generation=True)  # left-padded: the marks move with the tokens
    assert tok.decode(gen["input_ids"][0][gen["copy_mask"][0] == 1].tolist()) == ex["existing"]


def test_copied_bigrams_marks_only_what_the_output_already_copied():
    from acd.acm.model import copied_bigrams

    #        prompt: [9] a=[1 2 3 1 2 4]   output: [1 2 3]
    ids = torch.tensor([[9, 1, 2, 3, 1, 2, 4, 1, 2, 3]])
    src = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    gen = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    used = copied_bigrams(ids, gen, src)[0]
    assert not used[:8].any()  # nothing is used before the output has emitted a bigram
    # after emitting "1 2": both source positions holding 2-after-1 count as copied, nothing else
    assert used[8].nonzero().flatten().tolist() == [2, 5]
    assert used[9].nonzero().flatten().tolist() == [2, 3, 5]  # then "2 3"


def test_copy_head_reproduces_the_existing_caption_when_the_gate_copies(toy):
    """An untrained ACM whose gate always points copies a word for word and stops at a's end: the suffix
    match, the copied-bigram penalty and the end marker together make "keep the caption" the default edit,
    even with repeated words and bigrams ("a red", "the")."""
    model, tok, cfg = _model_and_tok(toy)
    with torch.no_grad():
        model.copy.gate.bias.fill_(-30.0)  # p_vocab ~ 0: every token comes from the pointer
    existing = ("A red kite and a red ball sit on the grass. The kite is near the ball, and the ball is red. "
                "Near the ball, a small red kite waits.")
    ex = {"modality": "image", "media": torch.zeros(3, 64, 64), "instruction": "Describe the image.",
          "existing": existing, "chosen": existing}
    batch = collate([ex, {**ex, "existing": "A cat."}], tok, cfg["model"], for_generation=True)
    batch.pop("labels")
    out = model.generate(**batch, max_new_tokens=80)
    assert tok.decode(out[0]) == existing
    assert tok.decode(out[1]) == "A cat."
    model.copy = None  # the same model without the head does not copy: the check above can fail
    no_copy = collate([ex], tok, cfg["model"], for_generation=True)
    no_copy.pop("labels")
    assert tok.decode(model.generate(**no_copy, max_new_tokens=80)[0]) != existing


def test_qcc_mixing_ratio():
    rows = [{"pair_id": str(i), "chosen": f"c{i}", "rejected": f"a{i}", "is_qcc": False} for i in range(100)]
    rows += [{"pair_id": f"q{i}", "chosen": f"c{i}", "rejected": f"c{i}", "is_qcc": True} for i in range(100)]
    for ratio in (0.0, 0.25, 0.4):
        out = list(mix_qcc(rows, ratio))
        share = sum(r["is_qcc"] for r in out) / len(out)
        assert abs(share - ratio) < 0.03, (ratio, share)
        assert all((r["rejected"] == r["chosen"]) == r["is_qcc"] for r in out)
    assert len(list(mix_qcc(rows, None))) == 200


def test_train_loss_falls_checkpoint_roundtrip_and_refine(toy, tmp_path):
    from acd.acm.infer import Refiner
    from acd.acm.train import load_checkpoint, train

    cfg = _cfg()
    cfg["train"]["precision"] = "fp32"  # bf16 autocast has its own test (CPU bf16 is ~3x slower per step)
    summary = train(toy, cfg, tmp_path / "run", steps=40)
    print("tiny run loss", summary["initial_loss"], "->", summary["final_loss"])
    assert summary["final_loss"] < 0.6 * summary["initial_loss"]
    log = [json.loads(l) for l in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5, 10, 15, 20, 25, 30, 35, 40]

    model, tok, cfg = load_checkpoint(tmp_path / "run")
    model2, _, _ = load_checkpoint(Path(summary["checkpoint"]))
    ex = list(iterate_examples(shard_urls(toy), cfg["model"], shuffle_buffer=0))[:3]
    batch = collate(ex, tok, cfg["model"])
    with torch.no_grad():
        assert torch.equal(model(**batch)["logits"], model2(**batch)["logits"])

    media = next(toy.glob("shards/train/image-*.tar"))
    import tarfile

    with tarfile.open(media) as tar:
        jpg = next(m for m in tar.getmembers() if m.name.endswith(".jpg"))
        (tmp_path / "x.jpg").write_bytes(tar.extractfile(jpg).read())
    text = Refiner(tmp_path / "run", max_new_tokens=30).refine(tmp_path / "x.jpg", "Describe this image in detail.",
                                                               "A red square.")
    assert isinstance(text, str) and len(text.split()) >= 2


def test_resume_reproduces_uninterrupted_run(toy, tmp_path):
    from acd.acm.train import train

    cfg = _cfg()
    cfg["train"]["precision"] = "fp32"  # exact equality
    cfg["train"]["log_every"] = 1
    full = train(toy, cfg, tmp_path / "a", steps=14)
    part = train(toy, cfg, tmp_path / "b", steps=14, stop_after=9)  # 9 steps: crosses an epoch boundary
    assert part["step"] == 9
    resumed = train(toy, cfg, tmp_path / "b", steps=14)
    assert resumed["step"] == 14
    a = torch.load(Path(full["checkpoint"]) / "model.pt")
    b = torch.load(Path(resumed["checkpoint"]) / "model.pt")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    la = [json.loads(l)["loss"] for l in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    lb = [json.loads(l)["loss"] for l in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert la == pytest.approx(lb, abs=1e-4)


def test_hf_backbones_from_local_paths(toy, tmp_path):
    """Any local HF vision encoder / causal LM (here tiny random ones saved to disk) plugs in by path."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, ViTConfig, ViTModel

    from acd.acm.train import train

    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=64, patch_size=16)).save_pretrained(tmp_path / "vit")
    bpe = CaptionTokenizer.train(["a red square on the left.", "a blue block moves."] * 3, vocab_size=300)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tok, bos_token="<s>", eos_token="</s>",
                                     pad_token="<pad>", unk_token="<unk>")
    hf_tok.save_pretrained(tmp_path / "lm")
    LlamaForCausalLM(LlamaConfig(vocab_size=len(hf_tok), hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=128)).save_pretrained(tmp_path / "lm")
    cfg = _cfg()
    cfg["model"]["encoder"]["image"] = {"kind": "hf", "path": str(tmp_path / "vit")}
    cfg["model"]["lm"] = {"kind": "hf", "path": str(tmp_path / "lm")}
    summary = train(toy, cfg, tmp_path / "run", steps=3)
    assert summary["step"] == 3 and summary["final_loss"] is not None


def test_bf16_autocast_training_steps(toy, tmp_path):
    from acd.acm.train import autocast_ctx, train

    model, tok, cfg = _model_and_tok(toy)
    batch = collate(list(iterate_examples(shard_urls(toy), cfg["model"], shuffle_buffer=0))[:2], tok, cfg["model"])
    with autocast_ctx("bf16", torch.device("cpu")):
        assert model(**batch)["logits"].dtype == torch.bfloat16
    cfg["train"]["precision"] = "bf16"
    cfg["train"]["log_every"] = 1
    s = train(toy, cfg, tmp_path / "run", steps=4)
    assert s["step"] == 4 and torch.isfinite(torch.tensor(s["final_loss"]))
