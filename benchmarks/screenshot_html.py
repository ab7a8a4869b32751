"""Render a leaderboard HTML table in headless Chromium and save a PNG screenshot of it.

    python benchmarks/screenshot_html.py results/fer2013-core/leaderboard.html results/fer2013-core/leaderboard-html.png
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

STYLE = """<style>body{font-family:sans-serif;font-size:13px;margin:16px}
table{border-collapse:collapse}th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}
th{background:#eef}td:nth-child(2),td:nth-child(3){text-align:left}</style>"""


def main(html_path: str, png_path: str, width: int = 1600, height: int = 420) -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        print("no chromium on PATH (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    page = f"<html><head><meta charset='utf-8'>{STYLE}</head><body>{Path(html_path).read_text()}</body></html>"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "page.html"
        src.write_text(page)
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp}/profile", f"--screenshot={Path(png_path).resolve()}",
               f"--window-size={width},{height}", src.as_uri()]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    print(f"written: {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
