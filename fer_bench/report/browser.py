"""Headless Chromium: a screenshot of a page or its DOM after its script ran (the leaderboard page's checks and
``fer-bench leaderboard --screenshot``)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from fer_bench.utils.errors import FerBenchError

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")  # Debian's name first


def find_chromium() -> str | None:
    """The first Chromium-family browser on PATH."""
    return next((p for p in map(shutil.which, CHROMIUM) if p), None)


def _chromium(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    browser = find_chromium()
    if browser is None:
        raise FerBenchError(
            f"no headless browser found (looked for {', '.join(CHROMIUM)} on PATH). Install "
            "Debian's `chromium` (apt-get install chromium) or drop --screenshot."
        )
    with tempfile.TemporaryDirectory() as profile:
        # NOTE: --no-sandbox because CI and containers run as root, where Chromium's sandbox refuses to start; the
        # page is our own file. A throw-away profile lets two calls run at once.
        cmd = [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise FerBenchError(f"{Path(browser).name} did not finish within {timeout:.0f} s: {' '.join(args)}") from e
    if done.returncode != 0:
        raise FerBenchError(f"{Path(browser).name} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return done


SCREEN = (1440, 900)  # a laptop's window: the default tables fit its width


def screenshot(page: Path, png: Path, *, width: int = SCREEN[0], height: int = SCREEN[1]) -> None:
    """A PNG of the page as headless Chromium draws it, ``width`` × ``height`` pixels."""
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)  # so an old screenshot never passes for a new one
    _chromium(
        [
            f"--screenshot={png.resolve()}",
            f"--window-size={width},{height}",
            "--virtual-time-budget=3000",
            page.resolve().as_uri(),
        ]
    )
    if not png.is_file():
        raise FerBenchError(f"Chromium wrote no screenshot to {png}.")


def dump_dom(page: Path, query: str = "", *, width: int = SCREEN[0], height: int = SCREEN[1]) -> str:
    """The page's DOM after its script ran in a ``width`` × ``height`` window (``query``: e.g.
    ``sort=top1&dir=asc``)."""
    url = page.resolve().as_uri() + (f"?{query}" if query else "")
    return _chromium(["--dump-dom", f"--window-size={width},{height}", "--virtual-time-budget=3000", url]).stdout
