"""`anycapeval` flow: AnyCapEval (official benchmark format) for a captioner, optionally + an ACM checkpoint.

With `dataset_dir`, a synthetic split is first built from the dataset's test shards (key points from grounding)
and evaluated; otherwise `bench_dir` (default: the official reference slice) is.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger


@flow(name="anycapeval")
def anycapeval(bench_dir: str | None = None, dataset_dir: str | None = None, captioner: str = "reference",
               acm_ckpt: str | None = None, out_dir: str = "runs/anycapeval/latest", split: str = "test",
               limit: int | None = None) -> dict:
    from acd.evaluation.anycapeval import evaluate
    from acd.paths import REFERENCE_DIR

    logger = get_run_logger()
    out_dir = str(Path(out_dir).resolve())
    if dataset_dir:
        from acd.evaluation.synthetic_split import from_dataset

        bench_dir = str(from_dataset(dataset_dir, Path(out_dir) / "bench", split=split, limit=limit))
    bench_dir = bench_dir or str(REFERENCE_DIR / "anycapeval")
    res = evaluate(bench_dir, out_dir, captioner=captioner, acm=acm_ckpt, log=logger.info)
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(key="anycapeval", markdown=Path(res["paths"]["md"]).read_text())
    except Exception as exc:
        logger.warning("no artifact: %s", exc)
    return res


if __name__ == "__main__":
    anycapeval()
