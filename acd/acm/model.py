"""ACM: frozen modality encoder -> MLP projector -> causal LM over [media tokens, prompt(q, a)] -> c.

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

from acd.paths import SCHEMAS_DIR

IGNORE = -100


# ----------------------------------------------------------------------------------------------- config
def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


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
    return _merge(load_config(base), raw) if base else raw


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

    def forward(self, input_ids, attention_mask, media, media_index, labels=None):
        embeds, mask = self._embed(input_ids, attention_mask, media, media_index)
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        logits = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=pos).logits
        result = {"logits": logits}
        if labels is not None:
            full = torch.cat([torch.full((labels.shape[0], self.n_media), IGNORE, dtype=labels.dtype,
                                         device=labels.device), labels], dim=1)
            # next-token prediction: position t predicts token t+1; only c (and its eos) carry labels
            result["loss"] = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                             full[:, 1:].reshape(-1), ignore_index=IGNORE)
        return result

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, media, media_index, max_new_tokens: int = 96) -> list[list[int]]:
        """Greedy decoding with a KV cache. Prompts must be LEFT-padded (collate(..., for_generation=True))."""
        embeds, mask = self._embed(input_ids, attention_mask, media, media_index)
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=True)
        b = input_ids.shape[0]
        done = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
        tokens: list[list[int]] = [[] for _ in range(b)]
        emb = self.lm.get_input_embeddings()
        for step in range(max_new_tokens):
            logits = out.logits[:, -1].float()
            if step == 0:  # a caption is never empty
                logits[:, self.eos_id] = float("-inf")
            nxt = logits.argmax(-1)
            for i in range(b):
                if not done[i]:
                    if nxt[i].item() == self.eos_id:
                        done[i] = True
                    else:
                        tokens[i].append(nxt[i].item())
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones(b, 1, dtype=mask.dtype, device=mask.device)], dim=1)
            pos = pos[:, -1:] + 1
            out = self.lm(inputs_embeds=emb(nxt[:, None]), attention_mask=mask, position_ids=pos,
                          past_key_values=out.past_key_values, use_cache=True)
        return tokens
