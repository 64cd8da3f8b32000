"""Open a report the way a person does: in a real browser (Debian's headless chromium,
driven by Playwright's Python API; no browser is downloaded). Used by the browser tests and
by ``tools/report_screenshots.py``."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

# Debian's package installs /usr/bin/chromium; INSECTML_CHROMIUM points elsewhere.
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    explicit = os.environ.get("INSECTML_CHROMIUM")
    if explicit:
        return explicit
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


@dataclass
class PageCheck:
    """What the browser saw: script errors, console errors, images that did not decode."""

    path: Path
    script_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    n_images: int = 0
    title: str = ""

    @property
    def problems(self) -> list[str]:
        return (
            [f"script error: {e}" for e in self.script_errors]
            + [f"console error: {e}" for e in self.console_errors]
            + [f"broken image: {alt}" for alt in self.broken_images]
        )


def check_pages(
    paths: list[Path], screenshots: Path | None = None, width: int = 1200, height: int = 1600
) -> list[PageCheck]:
    """Load every HTML file in one headless chromium; with ``screenshots``, save the top
    ``height`` pixels of each page as ``<screenshots>/<parent>-<stem>.png``."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise RuntimeError("no chromium found (Debian: apt-get install chromium; or set INSECTML_CHROMIUM)")
    checks = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            for path in paths:
                check = PageCheck(Path(path))
                page = browser.new_page(viewport={"width": width, "height": height})
                page.on("pageerror", lambda error, c=check: c.script_errors.append(str(error)))
                page.on(
                    "console",
                    lambda message, c=check: c.console_errors.append(message.text) if message.type == "error" else None,
                )
                page.goto(Path(path).resolve().as_uri(), wait_until="load")
                images = page.evaluate(
                    "Array.from(document.images).map(i => [i.alt || i.src.slice(0, 40), i.complete && i.naturalWidth > 0])"
                )
                check.n_images = len(images)
                check.broken_images = [alt for alt, ok in images if not ok]
                check.title = page.title()
                if screenshots is not None:
                    screenshots.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(screenshots / f"{Path(path).parent.name}-{Path(path).stem}.png"))
                page.close()
                checks.append(check)
        finally:
            browser.close()
    return checks
