"""Screenshots of every role's main page on a demo instance, for the README (docs/screenshots/demo-*.png).

    GOVERNANCE_INSTANCE=/tmp/shots/instance .venv/bin/govern init
    GOVERNANCE_INSTANCE=/tmp/shots/instance .venv/bin/govern demo
    GOVERNANCE_INSTANCE=/tmp/shots/instance .venv/bin/python scripts/screenshots.py

Serves the instance's app on a free local port (werkzeug, in a thread), signs in as each demo account
through the login form in Debian's Chromium (Playwright) and saves full-page PNGs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from governance.app import create_app  # noqa: E402
from governance.config import resolve_instance_path  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: (file name, account, path, locale)
SHOTS = [
    ("demo-submitter-dashboard", "dev@demo.hospital", "/", "en"),
    ("demo-submitter-deployment", "dev@demo.hospital", "/deployments/1", "en"),
    ("demo-chair-dashboard", "chair@demo.hospital", "/", "en"),
    ("demo-chair-intake", "chair@demo.hospital", "/intake", "en"),
    ("demo-chair-meeting", "chair@demo.hospital", "/meetings/1", "en"),
    ("demo-reviewer-queue", "ai.zhou@demo.hospital", "/review", "en"),
    ("demo-case", "chair@demo.hospital", "/submissions/3", "en"),
    ("demo-audit", "chair@demo.hospital", "/submissions/3/audit", "en"),
    ("demo-compliance-registry", "compliance@demo.hospital", "/registry", "en"),
    ("demo-compliance-events", "compliance@demo.hospital", "/events", "en"),
    ("demo-clinician-report", "clinician@demo.hospital", "/incidents/new", "en"),
    ("demo-admin-users", "admin@demo.hospital", "/admin/users", "en"),
    ("demo-chair-dashboard-zh", "chair@demo.hospital", "/", "zh_CN"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    instance = resolve_instance_path()
    accounts = json.loads((instance / "demo-accounts.json").read_text())
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app({"audit_dispatch": "queue", "dossier_dispatch": "queue"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
            for name, email, path, locale in SHOTS:
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                if locale != "en":
                    context.add_cookies([{"name": "locale", "value": locale, "url": base}])
                page = context.new_page()
                page.goto(f"{base}/login")
                page.fill("input[name=email]", email)
                page.fill("input[name=password]", accounts[email])
                page.click("button.primary[type=submit]")  # the header also has the language switch
                page.wait_for_url(f"{base}/")
                response = page.goto(f"{base}{path}")
                if response is None or response.status != 200:
                    raise SystemExit(f"{path} as {email}: HTTP {response.status if response else '?'}")
                page.screenshot(path=str(args.out / f"{name}.png"), full_page=True)
                print(f"{name}.png  {email} {path}")
                context.close()
            browser.close()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
