"""The people of the page stories, each in their own browser context, and the few locators the stories share."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, BrowserContext, Page, expect

from ..factories import PASSWORD


class Actor:
    """One person in their own browser context, signed in through the login page."""

    def __init__(self, browser: Browser, base_url: str, user, problems: list[str]):
        self.user = user
        self.context: BrowserContext = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800},
                                                           accept_downloads=True)
        self.context.set_default_timeout(15_000)
        self.page: Page = self.context.new_page()
        who = user.email
        self.page.on("console", lambda m: problems.append(f"{who}: console {m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: problems.append(f"{who}: page error: {e}"))
        self.page.on("response", lambda r: problems.append(f"{who}: HTTP {r.status} {r.request.method} {r.url}")
                     if r.status >= 400 else None)

    def login(self) -> Page:
        page = self.page
        page.goto("/")
        expect(page).to_have_url(re.compile(r"/login"))
        page.get_by_label("E-mail").fill(self.user.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()
        expect(page.locator(".session .who")).to_have_text(self.user.name)
        return page

    def nav(self, name: str) -> Page:
        self.page.locator("nav.mainnav").get_by_role("link", name=name, exact=True).click()
        return self.page

    def close(self) -> None:
        self.context.close()


def flash(page: Page):
    return page.locator(".flash")


def card(page: Page, heading: str):
    """The card whose heading is ``heading``."""
    return page.locator("section.card").filter(has=page.get_by_role("heading", name=heading, exact=True))


def case_state(page: Page):
    return page.locator(".case-head .state")


def click_action(page: Page, label: str) -> None:
    """Press the button of one allowed transition on the case page."""
    page.locator("#actions form.action").get_by_role("button", name=label, exact=True).click()


def verified_offline(pdf, certificate, expected_sha256: str | None = None):
    """Verify a downloaded signed PDF as an outsider would. pyHanko validates with asyncio.run(): off the thread
    where Playwright's event loop runs."""
    from concurrent.futures import ThreadPoolExecutor

    from governance.dossier.verify import verify

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(verify, pdf, [certificate], expected_sha256=expected_sha256).result()


class Cast:
    """The people of one story, as a context manager: ``cast(user)`` signs a person in, in their own browser
    context; what went wrong on any of their pages is collected in ``problems``. If the story breaks, each person's
    page is kept as a screenshot (``<prefix>-<name>``); every context is closed at the end."""

    def __init__(self, browser: Browser, base_url: str, screenshot, prefix: str):
        self.browser, self.base_url, self.screenshot, self.prefix = browser, base_url, screenshot, prefix
        self.problems: list[str] = []
        self.actors: list[Actor] = []

    def __call__(self, user) -> Actor:
        created = Actor(self.browser, self.base_url, user, self.problems)
        self.actors.append(created)
        created.login()
        return created

    def __enter__(self) -> Cast:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if kind is not None:  # where each person was when the story broke, for the test artefacts
                for each in self.actors:
                    if not each.page.is_closed():
                        self.screenshot(each.page, f"{self.prefix}-{each.user.email.split('@')[0]}", docs=False)
        finally:
            for each in self.actors:
                each.close()
