"""`train-acm` flow: train an ACM on a built dataset (started by the lead's build flow via run_deployment)."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger


@flow(name="train-acm")
def train_acm(dataset_dir: str, config: str = "tiny", out_dir: str | None = None, steps: int | None = None,
              start_eval: bool = False) -> dict:
    """Train ACM on a built dataset; with start_eval, hand the checkpoint to the anycapeval deployment."""
    from acd.acm.train import train

    logger = get_run_logger()
    dataset_dir = str(Path(dataset_dir).resolve())  # absolute: the paths handed on must not depend on a cwd
    summary = train(dataset_dir, config, out_dir, steps=steps, log=logger.info)
    logger.info("checkpoint: %s", summary["checkpoint"])
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(key="acm-training", markdown=(
            f"# ACM training\n\n- dataset: `{dataset_dir}`\n- config: `{config}`\n- steps: {summary['step']}\n"
            f"- loss: {summary['initial_loss']} → {summary['final_loss']}\n- checkpoint: `{summary['checkpoint']}`\n"))
    except Exception as exc:  # artifacts need a server/API; the training result must not depend on them
        logger.warning("no artifact: %s", exc)
    if start_eval:
        from prefect.deployments import run_deployment

        run = run_deployment("anycapeval/default", timeout=0, parameters={
            "dataset_dir": dataset_dir, "captioner": "grounded:rejected", "acm_ckpt": summary["checkpoint"],
            "out_dir": str(Path(summary["run_dir"]) / "anycapeval")})
        logger.info("started anycapeval flow run %s", run.id)
    return summary


if __name__ == "__main__":
    import sys

    train_acm(sys.argv[1] if len(sys.argv) > 1 else "out/demo")
