"""The audit review page in a real headless Chromium (Debian's), driven by Playwright: sign in,
filter, sort, open a record, check the chain, export. A screenshot is kept as an artifact."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

from tests.conftest import MODEL, ROOT, Server

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


def test_review_page_in_chromium(start_server: type[Server], data_dir: Path) -> None:
    server = start_server(data_dir, "--workers", "1", "--threads", "1")
    outsider = server.create_key("outsider", "contractor")  # a role the policy does not know
    for _ in range(3):
        httpx.post(f"{server.url}/v1/chat/completions", headers={
            "Authorization": f"Bearer {outsider}"}, json={
            "model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    with server.client as client:
        assert client.get("/v1/models").status_code == 200
    chromium = shutil.which("chromium") or "/usr/bin/chromium"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.url}/admin/audit/ui")
        # a refused token sends you back to sign in, with a reason
        page.fill("#token", "vagt_wrong")
        page.click("#login-form button")
        expect(page.locator("#login-error")).to_contain_text("refused")
        page.fill("#token", server.key)
        page.click("#login-form button")
        expect(page.locator("#records tbody tr").first).to_be_visible()
        expect(page.locator("#chain")).to_contain_text("chain verified")

        page.select_option("select[name=decision]", "denied")
        page.fill("input[name=subject]", "key:outsider")
        page.click("#filters button[type=submit]")
        rows = page.locator("#records tbody tr")
        expect(rows).to_have_count(3)
        for row in range(3):
            expect(rows.nth(row).locator("td").nth(4)).to_have_text("denied")
            expect(rows.nth(row).locator("td").nth(1)).to_have_text("key:outsider")

        page.click("th[data-key=time]")  # sort oldest first
        expect(page.locator("th[data-key=time]")).to_have_attribute("aria-sort", "ascending")
        times = rows.locator("td:first-child").all_inner_texts()
        assert times == sorted(times)

        rows.first.click()
        expect(page.locator("#detail")).to_be_visible()
        first_id = rows.first.get_attribute("data-id")
        expect(page.locator("#detail-id")).to_have_text(first_id or "")
        expect(page.locator("#detail-fields")).to_contain_text("permission_denied")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "audit-ui.png"), full_page=True)

        with page.expect_download() as download:
            page.click("#export-csv")
        exported = Path(download.value.path()).read_text().splitlines()
        assert exported[0].startswith("id,time,kind")
        assert len(exported) == 4
        assert all("key:outsider" in line for line in exported[1:])
        assert errors == []
        browser.close()
