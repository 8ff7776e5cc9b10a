"""An annotator in headless Chromium: log in, open one task per modality, check the media loads, answer,
submit; then the pipeline's sync reads exactly those answers back. Screenshots go to test-artifacts/."""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

import labelstudio_server as lss
from acd.review import push_lot, sync
from acd.review.stage import load_annotations
from acd.runstore import RunStore

pytestmark = [pytest.mark.labelstudio, pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("ACD_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = lss.ROOT / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]

# How each modality's media element proves it loaded (run in the page; true when ready).
MEDIA_READY = {
    "image": "() => [...document.querySelectorAll('img')].some(i => i.src.includes('local-files') && i.complete && i.naturalWidth > 0)",
    "video": "() => [...document.querySelectorAll('video')].some(v => v.readyState >= 2 && v.videoWidth > 0)",
    "audio": "() => [...document.querySelectorAll('audio')].some(a => a.readyState >= 1 && a.duration > 0)"
             " && !document.body.innerText.includes('Loading file')",  # and Label Studio's waveform is drawn
}
MEDIA_FACT = {
    "image": "() => [...document.querySelectorAll('img')].filter(i => i.src.includes('local-files')).map(i => i.naturalWidth)[0]",
    "video": "() => [...document.querySelectorAll('video')].map(v => v.readyState)[0]",
    "audio": "() => [...document.querySelectorAll('audio')].map(a => a.duration)[0]",
}


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():  # `make test` installs or asks for it first (scripts/test-deps.sh)
        pytest.fail(f"{CHROMIUM} missing: run 'sudo apt-get install -y chromium' (or set ACD_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


# DESIGN.md names [data-testid="choiceOptionText"]; label-studio 1.23.2 renders our inline Choices as
# ant-design checkboxes without that test id, so fall back to the choice's label (same visible text).
CHOICE = '[data-testid="choiceOptionText"], label.lsf-choice__checkbox'


def choose(page, text: str) -> None:
    page.locator(CHOICE, has_text=text).first.click()


def test_annotator_reviews_each_modality_in_the_ui(ls_server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    run = ls_server.document_root / f"ui-{uuid.uuid4().hex[:8]}"
    cfg = ls_server.review_cfg(gold_share=0, min_gold=0, project_prefix=f"UI {run.name}")
    targets = {}
    for modality in ("image", "video", "audio"):
        pairs, media = lss.make_lot(run, modality, f"{modality}-ui-b0", n_pairs=2, n_media=2)
        info = push_lot(run, pairs, cfg, seed=3, media=media)
        task = RunStore(run).read_part("review_tasks", f"{modality}-ui-b0").to_pylist()[0]
        targets[modality] = (info["project_id"], task)

    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{ls_server.url}/user/login/")
    page.fill('input[name="email"]', ls_server.user)
    page.fill('input[name="password"]', ls_server.password)
    page.click('button[type="submit"]')
    page.wait_for_url(lambda u: "/login" not in u, timeout=30000)

    facts = {}
    for modality, (project_id, task) in targets.items():
        t0 = time.monotonic()
        page.goto(f"{ls_server.url}/projects/{project_id}/data?task={task['task_id']}")
        page.wait_for_selector(CHOICE, timeout=60000)
        try:
            page.wait_for_function(MEDIA_READY[modality], timeout=30000)
        finally:
            page.screenshot(path=str(ARTIFACTS / f"review-{modality}-loaded.png"), full_page=True)
        facts[modality] = page.evaluate(MEDIA_FACT[modality])
        # The automatic verdict is pre-filled; this annotator disagrees and corrects the caption.
        choose(page, "Does not comply")
        choose(page, "Chosen hallucinates")
        if modality != "audio":  # the audio annotator leaves the caption alone
            box = page.locator('textarea[name="correction"], [data-testid="textarea-input"]').first
            box.fill(f"A red shape in the {modality}.")
            box.press("Enter")  # a TextArea region is added on Enter
        page.screenshot(path=str(ARTIFACTS / f"review-{modality}-answered.png"), full_page=True)
        page.click('[data-testid="bottombar-submit-button"]')
        ls = ls_server.client()
        for _ in range(60):  # the submit is an XHR: wait until the server has it
            if ls.tasks.get(id=str(task["task_id"])).total_annotations:
                break
            time.sleep(0.5)
        facts[f"{modality}_s"] = round(time.monotonic() - t0, 1)

    assert facts["image"] > 0 and facts["video"] >= 2 and facts["audio"] > 0, facts
    decisions = {d["lot_id"]: d for d in sync(run, cfg).to_pylist()}
    store = RunStore(run)
    for modality, (_, task) in targets.items():
        anns = load_annotations(store, f"{modality}-ui-b0")
        assert len(anns) == 1, (modality, anns)
        a = anns[0]
        assert a["pair_id"] == task["pair_id"] and a["annotator"] == ls_server.user
        assert a["chosen_complies"] is False and a["chosen_hallucinates"] is True
        assert a["rejected_worse"] == ("identical" if task["chosen"] == task["rejected"] else "yes")  # the pre-filled answer kept
        assert a["correction"] == (None if modality == "audio" else f"A red shape in the {modality}.")
        reviewed = {r["pair_id"]: r for r in store.read_part("review", f"{modality}-ui-b0").to_pylist()}[task["pair_id"]]
        if modality != "audio":
            assert reviewed["chosen"] == a["correction"] and reviewed["original_chosen"] == task["chosen"]
        assert decisions[f"{modality}-ui-b0"]["compliant"] == 0
    print(f"\n[browser] media facts and seconds per task: {facts}")
