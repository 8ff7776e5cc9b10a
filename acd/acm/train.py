"""ACM training: stream the shards, train projector + LM on c tokens, checkpoint, resume, DDP.

    python -m acd.acm.train --dataset out/demo [--config tiny] [--out runs/acm/demo-tiny] [--steps N]
    torchrun --nproc_per_node 8 -m acd.acm.train --dataset out/acd-300k --config my-gpu-config

A run directory holds checkpoints/step-NNNNNN/ (model.pt, optimizer.pt, trainer_state.json, config.yaml,
tokenizer/), `latest` (name of the newest checkpoint), train_log.jsonl (one line per logged step) and
summary.json. Starting again on the same run directory resumes from `latest`, at the exact batch: the data
order is a pure function of (seed, epoch), and the batches already consumed in the epoch are skipped.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from acd.acm.data import ShardStream, collate, dataset_qcc_ratio, dataset_texts, env_world, shard_urls
from acd.acm.model import ACM, load_config
from acd.acm.tokenizer import CaptionTokenizer
from acd.atomicio import sweep_dead_temps, tmp_path, write_text
from acd.merge import deep_merge


def build_tokenizer(cfg: dict, dataset_dir: str | Path, split: str) -> CaptionTokenizer:
    lm = cfg["model"]["lm"]
    if lm["kind"] == "hf":
        return CaptionTokenizer.from_pretrained(lm["path"])
    t = cfg["model"]["tokenizer"]
    return CaptionTokenizer.train(dataset_texts(dataset_dir, split), t["vocab_size"], t.get("min_frequency", 2))


def build_model(cfg: dict, tok: CaptionTokenizer) -> ACM:
    return ACM(cfg, tok.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id)


def lr_lambda(cfg_train: dict) -> Callable[[int], float]:
    warm, total = cfg_train["warmup_steps"], cfg_train["steps"]

    def f(step: int) -> float:  # linear warmup, cosine decay to 10%
        if step < warm:
            return (step + 1) / warm
        frac = min(1.0, (step - warm) / max(1, total - warm))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    return f


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto -> bf16 on a GPU that has it, fp32 on CPU (CPU bf16 autocast works but measured ~3x slower
    per step than fp32 for the tiny model on this 2-core machine)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision


def autocast_ctx(precision: str, device: torch.device):
    if resolve_precision(precision, device) != "bf16":
        return contextlib.nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# ------------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(run_dir: Path, model: ACM, tok: CaptionTokenizer, cfg: dict, optimizer=None, scheduler=None,
                    state: dict | None = None) -> Path:
    """Write to a temp dir then rename, so a crash mid-save never leaves a half checkpoint as `latest`.
    The temp dir has the one temp naming (acd.atomicio.tmp_path); a killed save's is swept here."""
    state = state or {"step": 0}
    name = f"step-{state['step']:06d}"
    final = run_dir / "checkpoints" / name
    sweep_dead_temps(run_dir / "checkpoints")
    tmp = tmp_path(final)
    tmp.mkdir(parents=True)
    try:
        torch.save(model.state_dict(), tmp / "model.pt")
        if optimizer is not None:
            torch.save({"optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler else None}, tmp / "optimizer.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
        (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        tok.save(tmp / "tokenizer")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already unless the save failed
    write_text(run_dir / "latest", name)
    return final


def default_run_dir(dataset_dir: str | Path, config_name: str) -> Path:
    """runs/acm/<the dataset's own name>-<config>: named after the dataset (its manifest's name), not after
    whatever its folder is called (`.../x/out` would train into runs/acm/out-tiny)."""
    from acd.export.manifest import dataset_name

    return Path("runs") / "acm" / f"{dataset_name(dataset_dir)}-{config_name}"


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir, or a run dir (its `latest`)."""
    path = Path(path)
    if (path / "model.pt").exists():
        return path
    if (path / "latest").exists():
        return path / "checkpoints" / (path / "latest").read_text().strip()
    raise FileNotFoundError(f"{path} is neither an ACM checkpoint nor a run directory with one")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[ACM, CaptionTokenizer, dict]:
    ckpt = resolve_checkpoint(path)
    cfg = yaml.safe_load((ckpt / "config.yaml").read_text())
    tok = CaptionTokenizer.load(ckpt / "tokenizer")
    model = build_model(cfg, tok)
    model.load_state_dict(torch.load(ckpt / "model.pt", map_location=map_location))
    model.eval()
    return model, tok, cfg


# ---------------------------------------------------------------------------------------------- training
def _init_distributed() -> tuple[int, int, torch.device]:
    rank, local_rank, world = env_world()
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def train(dataset_dir: str | Path, config: str | dict = "tiny", out_dir: str | Path | None = None, *,
          steps: int | None = None, overrides: dict | None = None, resume: bool = True,
          stop_after: int | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or resume) an ACM on a built dataset; returns the summary (also written to summary.json).

    stop_after: stop (after saving) once this step is reached, without changing the schedule — how tests
    and preemptible jobs interrupt a run that a later call resumes.
    """
    cfg = load_config(config)
    if overrides:
        cfg = deep_merge(cfg, overrides)
    if steps is not None:
        cfg["train"]["steps"] = steps
    tc, mc = cfg["train"], cfg["model"]
    if tc.get("qcc_ratio", "auto") == "auto":
        tc["qcc_ratio"] = dataset_qcc_ratio(dataset_dir) or 0.4
    dataset_dir = Path(dataset_dir).resolve()  # absolute: the summary's paths travel between flows
    run_dir = (Path(out_dir) if out_dir else default_run_dir(dataset_dir, cfg.get("name", "acm"))).resolve()
    rank, world, device = _init_distributed()
    is_main = rank == 0
    if device.type == "cpu" and tc.get("cpu_threads"):
        # Measured on the shared 2-core box under load: 2 intra-op threads 3.5 s/step, 1 thread 0.78 s/step
        # (OpenMP threads spin against each other and other processes). Config: train.cpu_threads.
        torch.set_num_threads(int(tc["cpu_threads"]))
    torch.manual_seed(tc["seed"])

    ckpt_state, tok = None, None
    if resume and (run_dir / "latest").exists():
        ckpt = resolve_checkpoint(run_dir)
        tok = CaptionTokenizer.load(ckpt / "tokenizer")
        ckpt_state = json.loads((ckpt / "trainer_state.json").read_text())
        log(f"[acm] resuming from {ckpt} (step {ckpt_state['step']})")
    if tok is None:
        tok = build_tokenizer(cfg, dataset_dir, tc["split"])  # deterministic: every rank trains the same one
    model = build_model(cfg, tok).to(device)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(tc))
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "losses": []}
    if ckpt_state is not None:
        model.load_state_dict(torch.load(ckpt / "model.pt", map_location=device))
        o = torch.load(ckpt / "optimizer.pt", map_location=device)
        opt.load_state_dict(o["optimizer"])
        sched.load_state_dict(o["scheduler"])
        state = ckpt_state
    net = model
    if world > 1:
        # modalities absent from a batch leave their projector unused: find_unused_parameters
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None, find_unused_parameters=True)

    stream = ShardStream(shard_urls(dataset_dir, tc["split"]), mc, seed=tc["seed"], qcc_ratio=tc["qcc_ratio"],
                         shuffle_buffer=tc["shuffle_buffer"])
    loader = torch.utils.data.DataLoader(stream, batch_size=tc["batch_size"], num_workers=tc["num_workers"],
                                         collate_fn=lambda b: collate(b, tok, mc))
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "train_log.jsonl"
    n_params = sum(p.numel() for p in model.trainable_parameters())
    if is_main:
        log(f"[acm] {dataset_dir} -> {run_dir}: {n_params/1e6:.2f}M trainable params, vocab {tok.vocab_size}, "
            f"{tc['steps']} steps x {tc['batch_size']} x {world} rank(s), "
            f"{resolve_precision(tc['precision'], device)} on {device}")
    t0, window = time.time(), []
    model.train()
    while state["step"] < tc["steps"]:
        stream.set_epoch(state["epoch"])
        got_batch = False
        for i, batch in enumerate(loader):
            if i < state["batch_in_epoch"]:
                continue  # resume: skip what this epoch already consumed
            got_batch = True
            batch = {k: ({m: t.to(device) for m, t in v.items()} if isinstance(v, dict) else v.to(device))
                     for k, v in batch.items()}
            with autocast_ctx(tc["precision"], device):
                loss = net(**batch)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), tc["grad_clip"])
            opt.step()
            sched.step()
            state["step"] += 1
            state["batch_in_epoch"] = i + 1
            window.append(loss.item())
            if state["step"] % tc["log_every"] == 0 or state["step"] == tc["steps"]:
                mean = sum(window) / len(window)
                state["losses"].append([state["step"], round(mean, 5)])
                if is_main:
                    rec = {"step": state["step"], "loss": round(mean, 5), "lr": sched.get_last_lr()[0],
                           "elapsed_s": round(time.time() - t0, 2)}
                    with log_path.open("a") as fh:
                        fh.write(json.dumps(rec) + "\n")
                    log(f"[acm] step {state['step']:>6} loss {mean:.4f} lr {rec['lr']:.2e} {rec['elapsed_s']:.0f}s")
                window = []
            last = state["step"] >= tc["steps"] or (stop_after is not None and state["step"] >= stop_after)
            if is_main and (state["step"] % tc["save_every"] == 0 or last):
                save_checkpoint(run_dir, model, tok, cfg, opt, sched, state)
            if last:
                break
        else:
            if not got_batch and state["batch_in_epoch"] == 0:
                raise RuntimeError(f"no training examples in {dataset_dir} (split {tc['split']})")
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
            continue
        break
    losses = state["losses"]
    summary = {"run_dir": str(run_dir), "dataset": str(dataset_dir), "config": cfg.get("name"), "step": state["step"],
               "steps": tc["steps"], "initial_loss": losses[0][1] if losses else None,
               "final_loss": losses[-1][1] if losses else None, "wall_s": round(time.time() - t0, 1),
               "trainable_params": n_params, "world_size": world,
               "checkpoint": str(resolve_checkpoint(run_dir)) if (run_dir / "latest").exists() else None}
    if is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        log(f"[acm] done: loss {summary['initial_loss']} -> {summary['final_loss']} in {summary['wall_s']} s")
    if world > 1:
        torch.distributed.barrier()
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="acd.acm.train", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, help="a built dataset directory (with shards/<split>/*.tar)")
    ap.add_argument("--config", default="tiny", help="schemas/acm/<name>.yaml or a path")
    ap.add_argument("--out", default=None, help="run directory (default runs/acm/<dataset's name>-<config>)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default=None)
    ap.add_argument("--no-resume", action="store_true", help="start over even if the run dir has a checkpoint")
    a = ap.parse_args(argv)
    overrides = {"train": {"precision": a.precision}} if a.precision else None
    if a.no_resume and a.out and Path(a.out).exists():
        shutil.rmtree(a.out)
    summary = train(a.dataset, a.config, a.out, steps=a.steps, overrides=overrides, resume=not a.no_resume)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if env_world()[0] == 0:
        print(f"checkpoint: {summary['checkpoint']}")
        print(f"run directory: {summary['run_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
