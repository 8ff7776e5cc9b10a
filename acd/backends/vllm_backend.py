"""The `vllm` backend: in-process `vllm.LLM` batch inference on a GPU box (the optional `vllm` extra).

Config::

    name: vllm
    model: Qwen/Qwen2.5-VL-7B-Instruct   # or models: {chosen: ..., rejected: ...}; each distinct model loads once
    model_revision: ""                    # passed to vllm as `revision`
    engine: {max_model_len: 8192, gpu_memory_utilization: 0.9, limit_mm_per_prompt: {image: 8}}
    params: {temperature: 0.7, max_tokens: 512}

Requests carry the same OpenAI-style chat messages as the openai backend (images and video frames as data
URLs, audio as input_audio), which `LLM.chat` accepts. vllm is imported only when this backend is built, so
the engine installs and runs without it.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from acd import recipe_model
from acd.backends.base import GenRequest, GenResult, register

log = logging.getLogger("acd.backends.vllm")
SAMPLING_KEYS = {"temperature", "top_p", "top_k", "max_tokens", "seed", "stop", "presence_penalty",
                 "frequency_penalty", "repetition_penalty"}


class VLLMBackend:
    name = "vllm"
    capabilities = recipe_model.VLLMBackend.capabilities

    def __init__(self, config: recipe_model.VLLMBackend | Mapping[str, Any], vllm_module, slot_share: float = 1.0):
        """`config`: the recipe's backend section, or a mapping of it (`name` may be left out). `slot_share`
        is accepted for make_backend's sake: the in-process engine shares no endpoint."""
        self.section = section = config if isinstance(config, recipe_model.VLLMBackend) else \
            recipe_model.as_section(recipe_model.VLLMBackend, {"name": self.name, **config})
        self._vllm = vllm_module
        models = dict(section.models)
        default = section.model or models.get("chosen")
        if not default:
            raise ValueError("vllm backend: needs `model:` or `models: {role: model}`")
        self.models = {r: models.get(r, default) for r in ("instruct", "chosen", "rejected", "judge")}
        self.models.update({k: v for k, v in models.items() if ":" in k})
        self.model = self.models["chosen"]
        self.model_revision = str(section.model_revision or "")
        self.engine_kwargs = dict(section.engine)
        self.params = dict(section.params)
        self.video_frames = section.video_frames
        self._llms: dict[str, Any] = {}

    def model_for(self, req: GenRequest) -> str:
        strategy = (req.pair or {}).get("rejection_strategy")
        if req.role == "rejected" and f"rejected:{strategy}" in self.models:
            return self.models[f"rejected:{strategy}"]
        return self.models.get(req.role, self.model)

    def revision(self, model: str) -> str:
        return self.model_revision

    def wire_params(self, req: GenRequest) -> dict[str, Any]:
        params = {**self.params, **{k: v for k, v in (req.params or {}).items() if k in SAMPLING_KEYS}}
        attempt = int((req.params or {}).get("attempt", 0) or 0)
        if attempt:
            params["seed"] = int(params.get("seed", 0)) + attempt
        return params

    def _llm(self, model: str):
        if model not in self._llms:
            kw = dict(self.engine_kwargs)
            if self.model_revision:
                kw.setdefault("revision", self.model_revision)
            self._llms[model] = self._vllm.LLM(model=model, **kw)
        return self._llms[model]

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        from acd.prompts import ensure_rendered, wire_messages

        results: dict[str, GenResult] = {}
        groups: dict[tuple, list[GenRequest]] = {}
        for req in requests:
            try:
                ensure_rendered(req, frames=self.video_frames)
                groups.setdefault((self.model_for(req), repr(sorted(self.wire_params(req).items()))), []).append(req)
            except Exception as exc:  # noqa: BLE001 - one unrenderable item fails alone
                results[req.request_id] = GenResult(req.request_id, "failed", error=f"render_error: {exc}"[:300],
                                                    backend=self.name)
        for (model, _), reqs in groups.items():
            sp = self._vllm.SamplingParams(**self.wire_params(reqs[0]))
            try:
                outs = self._llm(model).chat([wire_messages(r.messages) for r in reqs], sp, use_tqdm=False)
            except Exception as exc:  # noqa: BLE001 - isolate the bad item(s) by retrying one at a time
                log.warning("vllm batch of %d failed (%s); retrying item by item", len(reqs), type(exc).__name__)
                outs = []
                for r in reqs:
                    try:
                        outs.append(self._llm(model).chat([wire_messages(r.messages)], sp, use_tqdm=False)[0])
                    except Exception as e:  # noqa: BLE001
                        outs.append(e)
            for req, out in zip(reqs, outs):
                results[req.request_id] = self._result(req, model, out)
        return [results[r.request_id] for r in requests]

    def _result(self, req: GenRequest, model: str, out) -> GenResult:
        base = dict(backend=self.name, model=model, model_revision=self.model_revision)
        if isinstance(out, Exception):
            return GenResult(req.request_id, "failed", error=f"vllm_error: {type(out).__name__}: {out}"[:300], **base)
        if not out.outputs:
            return GenResult(req.request_id, "failed", error="empty_choices", **base)
        o = out.outputs[0]
        if o.finish_reason == "length":
            return GenResult(req.request_id, "failed", error="length_cutoff", **base)
        if not o.text.strip():
            return GenResult(req.request_id, "failed", error="empty_content", **base)
        usage = {"prompt_tokens": len(out.prompt_token_ids or []), "completion_tokens": len(o.token_ids or [])}
        return GenResult(req.request_id, "ok", text=o.text.strip(), usage=usage, **base)


@register("vllm")
def make_vllm_backend(config: recipe_model.VLLMBackend | Mapping[str, Any], slot_share: float = 1.0) -> VLLMBackend:
    try:
        import vllm  # heavy, GPU-only: imported only when a recipe asks for this backend
    except ImportError as exc:
        raise RuntimeError("backend 'vllm' needs the vllm package (GPU machines): pip install -e '.[vllm]' "
                           "- or use backend name 'openai' against a `vllm serve` endpoint") from exc
    return VLLMBackend(config, vllm, slot_share)
