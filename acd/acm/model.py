"""ACM: frozen modality encoder -> MLP projector -> causal LM over [media tokens, prompt(q, a)] -> c,
with an optional pointer-generator head that copies tokens of a (CopyHead; on in the tiny default).

Every backbone comes from the config (schemas/acm/*.yaml): `kind: tiny` builds a small randomly
initialised module (the embedded default, so training runs on a CPU), `kind: hf` loads any local HF
checkpoint with AutoModel / AutoModelForCausalLM (no hub access). Encoders are frozen (the paper's ACM
trains the projector and the LM); their random weights are still saved in the checkpoint so a reloaded
tiny model sees the same features.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from acd.merge import deep_merge
from acd.paths import SCHEMAS_DIR

IGNORE = -100


# ----------------------------------------------------------------------------------------------- config
def load_config(name_or_path: str | Path | dict = "tiny") -> dict[str, Any]:
    """A config by name (schemas/acm/<name>.yaml), by path, or as a dict; `base:` chains are resolved."""
    if isinstance(name_or_path, dict):
        raw = copy.deepcopy(name_or_path)
    else:
        p = Path(name_or_path)
        if not p.suffix:
            p = SCHEMAS_DIR / "acm" / f"{name_or_path}.yaml"
        raw = yaml.safe_load(p.read_text())
    base = raw.pop("base", None)
    return deep_merge(load_config(base), raw) if base else raw


# --------------------------------------------------------------------------------------------- encoders
def _pool_tokens(x: torch.Tensor, n: int) -> torch.Tensor:
    """[B, T, D] -> [B, n, D] by adaptive average pooling over T: every modality gives n media tokens."""
    return F.adaptive_avg_pool1d(x.transpose(1, 2), n).transpose(1, 2)


class _TinyTransformer(nn.Module):
    def __init__(self, dim: int, layers: int, max_len: int):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=dim * 2, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers else nn.Identity()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.body(x + self.pos[:, : x.shape[1]]))


class TinyImageEncoder(nn.Module):
    """ViT-like: a strided conv makes patch embeddings, a small transformer mixes them. Input [B,3,H,W] in 0..1."""

    def __init__(self, dim: int, layers: int, patch: int, image_size: int):
        super().__init__()
        self.out_dim = dim
        self.patch = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.body = _TinyTransformer(dim, layers, (image_size // patch) ** 2)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch(pixels * 2 - 1).flatten(2).transpose(1, 2)
        return self.body(x)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """Triangular mel filters [n_mels, n_fft//2+1] (torchaudio is not a dependency)."""
    def hz_to_mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    mels = torch.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    fb = torch.zeros(n_mels, bins.numel())
    for i in range(n_mels):
        lo, mid, hi = hz[i], hz[i + 1], hz[i + 2]
        up = (bins - lo) / (mid - lo)
        down = (hi - bins) / (hi - mid)
        fb[i] = torch.clamp(torch.minimum(up, down), min=0)
    return fb


class TinyAudioEncoder(nn.Module):
    """Log-mel spectrogram -> strided 1-D conv patches -> small transformer. Input [B, samples] waveform."""

    def __init__(self, dim: int, layers: int, n_mels: int, sample_rate: int, seconds: float):
        super().__init__()
        self.out_dim = dim
        self.n_fft, self.hop = 400, 160  # 25 ms windows, 10 ms hop at 16 kHz
        self.register_buffer("fb", mel_filterbank(self.n_fft, n_mels, sample_rate), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.conv = nn.Conv1d(n_mels, dim, kernel_size=8, stride=8)
        frames = int(seconds * sample_rate) // self.hop + 1
        self.body = _TinyTransformer(dim, layers, frames // 8 + 1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave.float(), self.n_fft, self.hop, window=self.window, return_complex=True).abs() ** 2
        mel = torch.log(self.fb @ spec + 1e-6)  # [B, n_mels, frames]
        mel = (mel - mel.mean(dim=(1, 2), keepdim=True)) / (mel.std(dim=(1, 2), keepdim=True) + 1e-5)
        return self.body(self.conv(mel).transpose(1, 2))


class HFEncoder(nn.Module):
    """Any local HF vision or audio encoder (AutoModel); its last hidden state is the feature sequence."""

    def __init__(self, path: str, modality: str, sample_rate: int):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        self.modality, self.sample_rate = modality, sample_rate
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
        # Encoder-decoder audio models (Whisper) and dual-tower models (CLIP/SigLIP): keep the encoder only.
        if hasattr(model, "get_encoder") and modality == "audio":
            model = model.get_encoder()
        elif hasattr(model, "vision_model"):
            model = model.vision_model
        self.model = model
        cfg = getattr(config, "vision_config", config)
        self.out_dim = getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model")
        self.extractor = None
        if modality == "audio":
            from transformers import AutoFeatureExtractor

            self.extractor = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
        else:
            try:
                from transformers import AutoImageProcessor

                proc = AutoImageProcessor.from_pretrained(path, local_files_only=True)
                mean, std = proc.image_mean, proc.image_std
            except Exception:  # no processor saved: the ViT/SigLIP convention
                mean, std = [0.5] * 3, [0.5] * 3
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.modality == "audio":
            feats = self.extractor([w.cpu().float().numpy() for w in x], sampling_rate=self.sample_rate,
                                   return_tensors="pt")
            feats = {k: v.to(x.device) for k, v in feats.items() if k in ("input_features", "input_values")}
            return self.model(**feats).last_hidden_state
        return self.model(pixel_values=(x - self.mean) / self.std).last_hidden_state


def build_encoder(modality: str, mcfg: dict) -> nn.Module:
    spec = mcfg["encoder"][modality]
    if spec["kind"] == "hf":
        return HFEncoder(spec["path"], modality, mcfg.get("audio_sample_rate", 16000))
    if modality == "audio":
        return TinyAudioEncoder(spec["dim"], spec["layers"], spec.get("n_mels", 40),
                                mcfg["audio_sample_rate"], mcfg["audio_seconds"])
    return TinyImageEncoder(spec["dim"], spec["layers"], spec.get("patch", 8), mcfg["image_size"])


def build_lm(lm_cfg: dict, vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> nn.Module:
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if lm_cfg["kind"] == "hf":
        return AutoModelForCausalLM.from_pretrained(lm_cfg["path"], local_files_only=True)
    fields = {k: v for k, v in lm_cfg.items() if k != "kind"}
    config = LlamaConfig(vocab_size=vocab_size, pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id,
                         tie_word_embeddings=True, attention_dropout=0.0, **fields)
    return LlamaForCausalLM(config)


def _kv_cache_keyword(model: nn.Module) -> str:
    """The keyword the model's forward takes the KV cache under: `cache` since transformers 5.x (where
    `past_key_values` is deprecated, to be removed in 5.40), `past_key_values` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


# ---------------------------------------------------------------------------------------------- copy head
def _shift_right(x: torch.Tensor, n: int) -> torch.Tensor:
    """x[:, j] := x[:, j-n] along dim 1 (zeros shifted in)."""
    if n == 0:
        return x
    return torch.cat([torch.zeros_like(x[:, :n]), x[:, :-n]], dim=1)


class CopyHead(nn.Module):
    """Pointer-generator head (See et al., 2017) for an editor that mostly keeps the existing caption.

    ACM rewrites a caption a into c, and most of c is a's own words: a small LM trained for minutes on a CPU
    does not learn to reproduce a 30-120-word span token by token, so it wrote fluent captions about the
    wrong objects. This head lets every output step point at a token of a and copy it, mixed with the
    LM's vocabulary distribution by a learned gate.

    The pointer score of output step t for source position j adds up
      - a learned match of the state that predicts t's next token with the state that predicted token j;
      - how long the output's latest tokens equal the source tokens just before j (exact suffix match,
        capped), with a weight that starts high: at initialisation the head already continues the span it
        is copying, and the longest match wins, so repeated words and bigrams ("a red", "the") do not send
        it to the wrong occurrence. Training starts from "copy a" and learns the edits;
      - a penalty on source tokens already copied (their bigram was emitted), the parallel-friendly form of
        See et al.'s coverage, so greedy decoding does not loop back over a span it has written.
    """

    def __init__(self, hidden: int, dim: int = 64, init_match: float = 3.0, init_used: float = 4.0,
                 match_cap: int = 16):
        super().__init__()
        self.dim, self.match_cap = dim, match_cap
        self.q = nn.Linear(hidden, dim, bias=False)
        self.k = nn.Linear(hidden, dim, bias=False)
        self.gate = nn.Linear(hidden, 1)
        self.match_weight = nn.Parameter(torch.tensor(float(init_match)))
        self.used_weight = nn.Parameter(torch.tensor(float(init_used)))

    def keys(self, states: torch.Tensor) -> torch.Tensor:
        """Per source position j: the projected state at j-1 (the one that predicted token j)."""
        return self.k(_shift_right(states, 1))

    def attend(self, h, keys, run, used, src_mask) -> torch.Tensor:
        """Pointer distribution [B, T, S]. h [B, T, d] query states; keys from keys(); run [B, T, S] from
        suffix_match_runs; used [B, T, S] from copied_bigrams; src_mask [B, S]."""
        s = self.q(h) @ keys.transpose(1, 2) / math.sqrt(self.dim)
        match = F.pad(run[..., :-1], (1, 0)).clamp(max=self.match_cap)  # the run ending just before j
        s = s + self.match_weight * match.to(s.dtype) - self.used_weight * used.to(s.dtype)
        s = s.masked_fill(~src_mask[:, None, :], torch.finfo(s.dtype).min)
        return s.softmax(-1)

    def p_vocab(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(h)).squeeze(-1)


def extend_runs(run: torch.Tensor, token: torch.Tensor, key_ids: torch.Tensor) -> torch.Tensor:
    """One output token later: run[b, j] = length of the common suffix of the output and key_ids[b, :j+1]."""
    return (token[:, None] == key_ids).long() * (_shift_right(run, 1) + 1)


@torch.no_grad()
def suffix_match_runs(out_ids: torch.Tensor, key_ids: torch.Tensor) -> torch.Tensor:
    """run[b, t, j] = length of the longest common suffix of out_ids[b, :t+1] and key_ids[b, :j+1] [B, T, S]
    (a loop over t of [B, S] operations: cheap next to the LM)."""
    run = torch.zeros_like(key_ids)
    rows = []
    for t in range(out_ids.shape[1]):
        run = extend_runs(run, out_ids[:, t], key_ids)
        rows.append(run)
    return torch.stack(rows, dim=1)


@torch.no_grad()
def copied_bigrams(ids: torch.Tensor, generated: torch.Tensor, src_mask: torch.Tensor,
                   key_ids: torch.Tensor | None = None) -> torch.Tensor:
    """used[b, t, j]: some generated position t' <= t emitted source token j right after source token j-1
    (key_ids: the sequence the source's previous tokens are read from; default ids)."""
    prev_out = _shift_right(ids, 1)
    prev_src = _shift_right(ids if key_ids is None else key_ids, 1)
    hit = (ids[:, :, None] == ids[:, None, :]) & (prev_out[:, :, None] == prev_src[:, None, :])
    hit = hit & generated[:, :, None] & src_mask[:, None, :]
    return hit.int().cummax(dim=1).values.bool()


# -------------------------------------------------------------------------------------------------- ACM
class ACM(nn.Module):
    def __init__(self, cfg: dict, vocab_size: int, pad_id: int, bos_id: int, eos_id: int):
        super().__init__()
        self.cfg = cfg
        mcfg = cfg["model"]
        self.n_media = mcfg["n_media_tokens"]
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.encoders = nn.ModuleDict({m: build_encoder(m, mcfg) for m in mcfg["encoder"]})
        for p in self.encoders.parameters():
            p.requires_grad_(False)
        self.lm = build_lm(mcfg["lm"], vocab_size, pad_id, bos_id, eos_id)
        hidden = self.lm.config.hidden_size
        ph = mcfg["projector"]["hidden"]
        self.projectors = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(enc.out_dim, ph), nn.GELU(), nn.Linear(ph, hidden))
            for m, enc in self.encoders.items()
        })
        copy_cfg = dict(mcfg.get("copy") or {})
        self.copy = CopyHead(hidden, **copy_cfg) if copy_cfg.pop("enabled", False) else None
        self.encoders.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoders.eval()  # frozen: never in training mode (no dropout/batch-stat drift)
        return self

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    # media: {modality: tensor}; media_index: {modality: LongTensor of batch rows}
    def encode_media(self, media: dict[str, torch.Tensor], media_index: dict[str, torch.Tensor],
                     batch: int) -> torch.Tensor:
        hidden = self.lm.config.hidden_size
        dtype = self.lm.get_input_embeddings().weight.dtype
        out = torch.zeros(batch, self.n_media, hidden, device=self.lm.device, dtype=dtype)
        for modality, x in media.items():
            enc = self.encoders[modality]
            with torch.no_grad():
                if modality == "video":  # [B, T, 3, H, W]: encode frames, mean-pool over time
                    b, t = x.shape[:2]
                    feats = _pool_tokens(enc(x.flatten(0, 1)), self.n_media).view(b, t, self.n_media, -1).mean(1)
                else:
                    feats = _pool_tokens(enc(x), self.n_media)
            proj = self.projectors[modality](feats.float())
            out = out.index_copy(0, media_index[modality].to(out.device), proj.to(out.dtype))
        return out

    def _embed(self, input_ids, attention_mask, media, media_index):
        b = input_ids.shape[0]
        med = self.encode_media(media, media_index, b)
        txt = self.lm.get_input_embeddings()(input_ids)
        embeds = torch.cat([med.to(txt.dtype), txt], dim=1)
        mask = torch.cat([torch.ones(b, self.n_media, dtype=attention_mask.dtype, device=attention_mask.device),
                          attention_mask], dim=1)
        return embeds, mask

    def forward(self, input_ids, attention_mask, media, media_index, labels=None, copy_mask=None):
        """logits [B, L, V] over the text positions (position t predicts token t+1); loss on labelled tokens.

        With the copy head the loss is the negative log of the mixture p_vocab * softmax(logits) +
        (1 - p_vocab) * pointer mass on source tokens equal to the target.
        """
        embeds, mask = self._embed(input_ids, attention_mask, media, media_index)
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        states = self.lm.base_model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos).last_hidden_state
        states = states[:, self.n_media:]
        logits = self.lm.get_output_embeddings()(states)
        result = {"logits": logits}
        if labels is None:
            return result
        target = labels[:, 1:]
        valid = target != IGNORE
        logp_vocab = logits[:, :-1].float().log_softmax(-1).gather(-1, target.clamp(min=0)[..., None]).squeeze(-1)
        if self.copy is None:
            result["loss"] = -(logp_vocab[valid]).mean()
            return result
        if copy_mask is None:
            raise ValueError("this ACM has a copy head: batches need copy_mask (acd.acm.data.collate makes it)")
        h = states.float()
        src, src_ids, key_ids = self._sources(input_ids, copy_mask)
        used = copied_bigrams(input_ids, labels != IGNORE, src, key_ids)
        run = suffix_match_runs(input_ids, key_ids)
        attn = self.copy.attend(h[:, :-1], self.copy.keys(h), run[:, :-1], used[:, :-1], src)
        hit = (src_ids[:, None, :] == target[:, :, None]) & src[:, None, :]
        p_copy = (attn * hit).sum(-1)
        g = self.copy.p_vocab(h[:, :-1]).clamp(1e-6, 1 - 1e-6)
        logp = torch.logaddexp(torch.log(g) + logp_vocab, torch.log1p(-g) + torch.log(p_copy + 1e-12))
        result["loss"] = -(logp[valid]).mean()
        return result

    def _sources(self, input_ids, copy_mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(where the pointer may go, the token each source position copies, the ids matched against the
        output).

        copy_mask 2 (the position after a) copies eos. In the matched ids everything outside a is -1 (never
        matches) except the token just before a, which reads as bos: a then starts the way the output does
        (after the bos answer marker), so the first output step finds a's first token at once."""
        src = copy_mask > 0
        src_ids = torch.where(copy_mask == 2, torch.full_like(input_ids, self.eos_id), input_ids)
        starts = (copy_mask == 1) & ~(_shift_right(copy_mask, 1) > 0)
        before_start = torch.cat([starts[:, 1:], torch.zeros_like(starts[:, :1])], dim=1)
        key_ids = torch.where(copy_mask == 1, input_ids, torch.full_like(input_ids, -1))
        key_ids = torch.where(before_start, torch.full_like(input_ids, self.bos_id), key_ids)
        return src, src_ids, key_ids

    def _next_distribution(self, h, keys, src_ids, src_mask, run, used) -> torch.Tensor:
        """Probabilities over the vocabulary for the next token, from the last state h [B, d]."""
        probs = self.lm.get_output_embeddings()(h).float().softmax(-1)
        if self.copy is None:
            return probs
        hf = h.float()[:, None]
        attn = self.copy.attend(hf, keys, run[:, None], used[:, None], src_mask)[:, 0]
        p_copy = torch.zeros_like(probs).scatter_add_(1, src_ids, attn * src_mask)
        g = self.copy.p_vocab(hf[:, 0])[:, None]
        return g * probs + (1 - g) * p_copy

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, media, media_index, max_new_tokens: int = 96,
                 copy_mask=None) -> list[list[int]]:
        """Greedy decoding with a KV cache. Prompts must be LEFT-padded (collate(..., for_generation=True))."""
        embeds, mask = self._embed(input_ids, attention_mask, media, media_index)
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        base = self.lm.base_model
        out = base(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=True)
        cache_kw = _kv_cache_keyword(base)
        states = out.last_hidden_state[:, self.n_media:]
        keys = src_mask = src_ids = key_ids = used = run = None
        if self.copy is not None:
            if copy_mask is None:
                raise ValueError("this ACM has a copy head: generation needs copy_mask")
            src_mask, src_ids, key_ids = self._sources(input_ids, copy_mask)
            keys = self.copy.keys(states.float())
            used = torch.zeros_like(src_mask)
            run = suffix_match_runs(input_ids, key_ids)[:, -1]
            src_prev = _shift_right(key_ids, 1)
        b = input_ids.shape[0]
        last = input_ids[:, -1]
        h = states[:, -1]
        done = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
        tokens: list[list[int]] = [[] for _ in range(b)]
        emb = self.lm.get_input_embeddings()
        for step in range(max_new_tokens):
            probs = self._next_distribution(h, keys, src_ids, src_mask, run, used)
            if step == 0:  # a caption is never empty
                probs[:, self.eos_id] = 0.0
            nxt = probs.argmax(-1)
            for i in range(b):
                if not done[i]:
                    if nxt[i].item() == self.eos_id:
                        done[i] = True
                    else:
                        tokens[i].append(nxt[i].item())
            if self.copy is not None:
                used |= (src_ids == nxt[:, None]) & (src_prev == last[:, None]) & src_mask
                run = extend_runs(run, nxt, key_ids)
            last = nxt
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones(b, 1, dtype=mask.dtype, device=mask.device)], dim=1)
            pos = pos[:, -1:] + 1
            out = base(inputs_embeds=emb(nxt[:, None]), attention_mask=mask, position_ids=pos,
                       use_cache=True, **{cache_kw: getattr(out, cache_kw)})
            h = out.last_hidden_state[:, -1]
        return tokens
