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
            box.fill(f"A red shape sits in the {modality}.")
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
        assert a["correction"] == (None if modality == "audio" else f"A red shape sits in the {modality}.")
        reviewed = {r["pair_id"]: r for r in store.read_part("review", f"{modality}-ui-b0").to_pylist()}[task["pair_id"]]
        if modality != "audio":
            assert reviewed["chosen"] == a["correction"] and reviewed["original_chosen"] == task["chosen"]
        assert decisions[f"{modality}-ui-b0"]["compliant"] == 0
    print(f"\n[browser] media facts and seconds per task: {facts}")


def test_nothing_an_annotator_sees_marks_the_gold_pairs(ls_server, browser):
    """Planted gold pairs must look like any other task: in the Data Manager (columns and cells) and in the
    labelling view of a gold task, no 'gold' anywhere, and the task data of gold and real tasks has the same keys."""
    # (The test's own names avoid the word, so any hit is the product's.)
    run = ls_server.document_root / f"planted-{uuid.uuid4().hex[:8]}"
    cfg = ls_server.review_cfg(gold_share=0.2, min_gold=2, project_prefix=f"PLANTED {run.name}")
    pairs, media = lss.make_lot(run, "image", "image-planted-b0", n_pairs=12, n_media=3)
    info = push_lot(run, pairs, cfg, seed=11, media=media)
    tasks = RunStore(run).read_part("review_tasks", "image-planted-b0").to_pylist()
    gold = [t for t in tasks if t["gold"]]
    assert info["gold"] == len(gold) >= 2  # the gold flag lives in the run dir only
    ls = ls_server.client()
    keys = {tuple(sorted(ls.tasks.get(id=str(t["task_id"])).data)) for t in tasks}
    assert len(keys) == 1, keys

    page = browser.new_page(viewport={"width": 1600, "height": 1100})
    page.goto(f"{ls_server.url}/user/login/")
    page.fill('input[name="email"]', ls_server.user)
    page.fill('input[name="password"]', ls_server.password)
    page.click('button[type="submit"]')
    page.wait_for_url(lambda u: "/login" not in u, timeout=30000)

    page.goto(f"{ls_server.url}/projects/{info['project_id']}/data")
    page.wait_for_function("() => document.body.innerText.includes('instruction')", timeout=60000)
    page.wait_for_function(f"() => document.body.innerText.includes('{gold[0]['chosen'][:20]}')", timeout=30000)
    page.screenshot(path=str(ARTIFACTS / "review-data-manager.png"), full_page=True)
    grid = page.evaluate("() => document.body.innerText")
    assert "gold" not in grid.lower(), [line for line in grid.splitlines() if "gold" in line.lower()][:5]

    page.goto(f"{ls_server.url}/projects/{info['project_id']}/data?task={gold[0]['task_id']}")
    page.wait_for_selector(CHOICE, timeout=60000)
    page.wait_for_function(MEDIA_READY["image"], timeout=30000)
    page.screenshot(path=str(ARTIFACTS / "review-gold-task.png"), full_page=True)
    view = page.evaluate("() => document.body.innerText")
    assert gold[0]["chosen"] in view and "gold" not in view.lower()


def test_a_skip_in_the_ui_brings_its_reason_to_the_run(ls_server, browser):
    """The guideline asks for a reason with every skip; Label Studio Community has no comments, so the reason
    is typed into the task's skip_reason box and travels with the skip (a cancelled annotation)."""
    run = ls_server.document_root / f"skip-{uuid.uuid4().hex[:8]}"
    cfg = ls_server.review_cfg(gold_share=0, min_gold=0, project_prefix=f"SKIP {run.name}")
    pairs, media = lss.make_lot(run, "image", "image-skip-b0", n_pairs=2, n_media=2)
    info = push_lot(run, pairs, cfg, seed=3, media=media)

    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{ls_server.url}/user/login/")
    page.fill('input[name="email"]', ls_server.user)
    page.fill('input[name="password"]', ls_server.password)
    page.click('button[type="submit"]')
    page.wait_for_url(lambda u: "/login" not in u, timeout=30000)
    # The label stream (Label All Tasks), where annotators work and Skip lives; it opens on the guideline.
    page.goto(f"{ls_server.url}/projects/{info['project_id']}/data?labeling=1")
    page.wait_for_selector(CHOICE, timeout=60000)
    page.locator(".lsf-modal-ls_visible button").first.click()
    page.wait_for_selector(".lsf-modal-ls_visible", state="detached", timeout=10000)
    box = page.locator('[name="skip_reason"]').first
    box.fill("the image does not load")
    box.press("Enter")
    page.screenshot(path=str(ARTIFACTS / "review-skip.png"), full_page=True)
    page.click('[data-testid="bottombar-skip-button"]')
    ls = ls_server.client()
    anns = []
    for _ in range(60):  # the skip is an XHR: wait until the server has it
        anns = [a for t in ls.tasks.list(project=info["project_id"], fields="all") for a in (t.annotations or [])]
        if anns:
            break
        time.sleep(0.5)
    assert len(anns) == 1 and anns[0]["was_cancelled"], anns
    d = sync(run, cfg).to_pylist()[0]
    issues = RunStore(run).read_part("review_issues", "image-skip-b0").to_pylist()
    assert (d["skipped"], d["mode"], d["pending"], d["human_decision"]) == (1, "auto", True, None)  # no verdict yet
    assert [(i["kind"], i["reason"]) for i in issues] == [("skipped", "the image does not load")]
