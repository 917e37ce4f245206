"""The web app end to end in headless Chromium: send, see the reply stream in, confirm, connect.

Drives Debian's ``chromium`` (``/usr/bin/chromium``) through Playwright, which downloads
nothing. Without the browser (or Playwright) the tests skip, saying what to install; under
``CI=true`` they fail instead, so a missing browser cannot pass silently. With
``GENIE_ASYNC_SCREENSHOTS=1`` the screenshots are also copied to ``docs/pages/images/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from genie_async import GenieClient
from genie_async.testing import Confirm, GenieSimulator, Say, Turn

from .conftest import REPO

try:
    from playwright.async_api import Page, async_playwright, expect
except ImportError:  # the tests skip (or, under CI, fail) saying what to install
    HAVE_PLAYWRIGHT = False
else:
    HAVE_PLAYWRIGHT = True

CHROMIUM = Path("/usr/bin/chromium")
# Needed on this closed network and in containers (no sandbox, no GPU, no calls home).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IMAGES = REPO / "docs" / "pages" / "images"
TIMEOUT_MS = 30_000  # generous: CI machines are shared and noisy


def require_browser() -> None:
    """Skip, saying what to install, when Playwright or Chromium is missing (fail under CI)."""
    reason = None
    if not HAVE_PLAYWRIGHT:
        reason = "Playwright is not installed: pip install -e '.[test]'"
    elif not CHROMIUM.exists():
        reason = f"Chromium not found at {CHROMIUM}: apt-get install chromium"
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser test)")
    pytest.skip(reason)


@pytest.fixture
async def page(webapp_server: TestServer, tmp_path: Path) -> AsyncIterator[Page]:
    """A fresh headless Chromium tab showing the web app."""
    require_browser()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(viewport={"width": 820, "height": 640})
            context.set_default_timeout(TIMEOUT_MS)
            tab = await context.new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda error: errors.append(str(error)))
            await tab.goto(str(webapp_server.make_url("/")))
            yield tab
            assert errors == [], f"JavaScript errors on the page: {errors}"
        finally:
            await browser.close()


async def screenshot(page: Page, name: str, tmp_path: Path) -> None:
    """Save a screenshot; with GENIE_ASYNC_SCREENSHOTS=1 also as docs/pages/images/<name>."""
    path = tmp_path / name
    await page.screenshot(path=str(path))
    if os.environ.get("GENIE_ASYNC_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, IMAGES / name)


async def send(page: Page, text: str) -> None:
    await page.get_by_label("Message").fill(text)
    await page.get_by_role("button", name="Send").click()


async def test_reply_streams_into_the_page(page: Page, tmp_path: Path) -> None:
    """A message gets the genie's replies one by one, the skill's progress, then the input back."""
    await page.get_by_role("button", name="How much PTO do I have?").click()
    replies = page.locator(".bubble.genie")
    await expect(replies.first).to_have_text("Let me look that up…")
    await expect(page.locator(".skill")).to_have_text("⚙ Get PTO balance: done")
    await expect(replies.nth(1)).to_have_text("You have 12 days of PTO left this year.")
    await expect(replies.nth(1).locator("strong")).to_have_text("12 days")
    await expect(page.get_by_label("Message")).to_be_enabled()
    await expect(page.locator(".bubble.user")).to_have_text("How much PTO do I have?")
    await screenshot(page, "webapp-reply.png", tmp_path)


async def test_approve_a_confirmation(
    page: Page, webapp_sim: GenieSimulator, tmp_path: Path
) -> None:
    """The confirmation card's Approve resumes the turn, whose reply then appears."""
    await send(page, "Book Dec 21-23 off, please.")
    card = page.locator(".card.confirmation")
    await expect(card.locator(".card-title")).to_have_text("Confirm: Submit Time Off Request")
    await expect(card.locator("dd")).to_have_text(["2026-12-21", "2026-12-23", "PTO"])
    await expect(page.locator("#status")).to_have_text("Waiting for your confirmation…")
    await screenshot(page, "webapp-confirmation.png", tmp_path)

    await card.get_by_role("button", name="Approve").click()
    await expect(card.locator(".card-status")).to_have_text("✓ Approved")
    await expect(page.locator(".bubble.genie").last).to_have_text(
        "Done: Dec 21-23 are booked off. Enjoy the break!"
    )
    await expect(page.get_by_label("Message")).to_be_enabled()
    await screenshot(page, "webapp-approved.png", tmp_path)
    assert [(a.resolution, a.status) for a in webapp_sim.approvals()] == [("approved", 200)]


async def test_reject_a_confirmation(page: Page, webapp_sim: GenieSimulator) -> None:
    """Reject posts a rejection; the genie's answer to it appears."""
    await send(page, "Book Dec 21-23 off, please.")
    card = page.locator(".card.confirmation")
    await card.get_by_role("button", name="Reject").click()
    await expect(card.locator(".card-status")).to_have_text("✗ Rejected")
    await expect(page.locator(".bubble.genie").last).to_have_text(
        "Okay, I did not submit anything."
    )
    [approval] = webapp_sim.approvals()
    assert (approval.resolution, approval.reason) == ("rejected", "Declined in the web app")


async def test_auth_link_card(page: Page, webapp_sim: GenieSimulator, tmp_path: Path) -> None:
    """A runtime-connection pause shows the auth link; once authorized, the reply arrives."""
    await send(page, "Show my Salesforce deals.")
    card = page.locator(".card.auth")
    await expect(card.locator(".card-title")).to_have_text("Connect Salesforce")
    link = card.get_by_role("link", name="Authorize Salesforce")
    href = await link.get_attribute("href")
    assert href is not None
    assert href.startswith(webapp_sim.url)
    await expect(link).to_have_attribute("target", "_blank")
    await screenshot(page, "webapp-auth.png", tmp_path)

    async with page.expect_popup() as popup_info:
        await link.click()  # the simulator's link page authorizes, as the real sign-in would
    popup = await popup_info.value
    await expect(popup.locator("body")).to_contain_text("authorized")
    await popup.close()
    await expect(page.locator(".bubble.genie").last).to_have_text(
        "You have 3 open opportunities, worth $42,000 in total."
    )
    await expect(card.locator(".card-status")).to_have_text("✓ Connected")
    await expect(link).to_have_count(0)


async def test_reply_markup_is_shown_as_text(page: Page, webapp_sim: GenieSimulator) -> None:
    """HTML in a reply is displayed literally and never runs."""
    hostile = '<img src=x onerror="window.pwned = 1"> <script>window.pwned = 2</script> **ok**'
    webapp_sim.next_turn(Turn(Say(hostile)))
    await send(page, "hello")
    bubble = page.locator(".bubble.genie")
    await expect(bubble).to_have_text(
        '<img src=x onerror="window.pwned = 1"> <script>window.pwned = 2</script> ok'
    )
    assert await page.locator(".log img, .log script").count() == 0
    assert await page.evaluate("window.pwned") is None


async def test_a_confirmation_decided_elsewhere_is_not_shown_as_rejected(
    page: Page, webapp_sim: GenieSimulator
) -> None:
    """The card shows the resolution recorded, not the button clicked: approved in another
    tab first, a click on Reject reads "already decided", and the skill still ran."""
    await send(page, "Book Dec 21-23 off, please.")
    card = page.locator(".card.confirmation")
    await expect(card.locator(".card-title")).to_have_text("Confirm: Submit Time Off Request")
    [call_id] = webapp_sim.pending_approvals()
    [conversation] = webapp_sim.conversations
    async with GenieClient(
        webapp_sim.genie_id,
        base_url=webapp_sim.url,
        api_key=webapp_sim.api_key,
        user_id=conversation.user_id,
    ) as other_tab:
        await other_tab.conversation(conversation.conversation_id).approve_skill(call_id)
    await card.get_by_role("button", name="Reject").click()
    await expect(card.locator(".card-status")).to_have_text("Already decided elsewhere")
    await expect(page.locator(".bubble.genie").last).to_have_text(
        "Done: Dec 21-23 are booked off. Enjoy the break!"
    )
    assert [a.resolution for a in webapp_sim.approvals() if a.status == 200] == ["approved"]


async def test_hostile_card_fields_are_shown_as_text(
    page: Page, webapp_sim: GenieSimulator
) -> None:
    """Skill names, parameters and auth links come from the genie: no markup, no script URL."""
    hostile = '<img src=x onerror="window.pwned = 1">'
    webapp_sim.next_turn(
        Turn(Confirm(hostile, parameters={hostile: hostile}, on_approve=[Say("ok")]))
    )
    await send(page, "hello")
    card = page.locator(".card.confirmation")
    await expect(card.locator(".card-title")).to_have_text(f"Confirm: {hostile}")
    await expect(card.locator("dt")).to_have_text([hostile])
    await expect(card.locator("dd")).to_have_text([hostile])
    await card.get_by_role("button", name="Approve").click()
    await expect(page.locator(".bubble.genie").last).to_have_text("ok")
    # An auth event whose link is a javascript: URL gets no link at all.
    await page.evaluate(
        """() => {
          const source = { cards: new Map(), authCards: [] };
          showAuth(source, { attempt_id: "a1", connector: "X", url: "javascript:window.pwned=3" });
        }"""
    )
    assert await page.locator(".card.auth a").count() == 0
    assert await page.locator(".log img").count() == 0
    assert await page.evaluate("window.pwned") is None
