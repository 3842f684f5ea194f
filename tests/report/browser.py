"""Load a report in headless Chromium and say which images and audio elements failed (shared by the
report and demo tests; imported as `from .browser import ...` / `from ..report.browser import ...`)."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

CHECK_SCRIPT = """
const done = arguments[arguments.length - 1];
(async () => {
  const out = {images: [], audio: []};
  for (const img of document.images) {
    let ok = true; try { await img.decode(); } catch (e) { ok = false; }
    out.images.push({src: img.getAttribute('src'), ok: ok && img.naturalWidth > 0});
  }
  for (const a of document.querySelectorAll('audio')) {
    const ok = await new Promise((resolve) => {
      if (a.readyState >= 1 && a.duration > 0) return resolve(true);
      a.addEventListener('loadedmetadata', () => resolve(a.duration > 0), {once: true});
      a.addEventListener('error', () => resolve(false), {once: true});
      a.preload = 'auto'; a.load();
    });
    out.audio.push({src: a.getAttribute('src'), ok, error: a.error ? a.error.code : null, duration: a.duration});
  }
  done(out);
})();
"""

needs_chromium = pytest.mark.skipif(
    shutil.which("chromedriver") is None or shutil.which("chromium") is None,
    reason="headless Chromium + chromedriver not installed (Debian packages chromium chromium-driver)")


def load_media(report_dir: Path, profile_dir: Path) -> dict:
    """Serve report_dir over HTTP, open its index.html in headless Chromium and return
    {"images": [{src, ok}], "audio": [{src, ok, error, duration}]} for every element on the page."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(report_dir))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            driver.set_script_timeout(60)
            driver.get(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            return driver.execute_async_script(CHECK_SCRIPT)
        finally:
            driver.quit()
    finally:
        server.shutdown()
        server.server_close()
