from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import threading

import numpy as np
import pytest
import soundfile as sf

from sodakit.report.builder import SODA_PUBLISHED, build_report


@pytest.fixture()
def summary_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "metrics.jsonl", "w") as f:
        for step in range(1, 21):
            f.write(json.dumps({"step": step, "loss": 5 / step ** 0.3, "loss_text": 6 / step ** 0.3,
                                "loss_audio": 4.5 / step ** 0.3, "lr": 1e-3}) + "\n")
        f.write(json.dumps({"step": 20, "val_loss": 4.0, "val_loss_audio": 3.9}) + "\n")
    t = np.arange(16000) / 16000
    sf.write(run / "prompt.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    sf.write(run / "out.wav", 0.3 * np.sin(2 * np.pi * 330 * t), 16000)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    fig.savefig(run / "iso.png")
    plt.close(fig)
    summary = {
        "title": "test report",
        "data": {"speech": {"hours": 0.5, "documents": 120}},
        "training": {"metrics": "metrics.jsonl", "info": {"model": "tiny", "steps": 20}},
        "evaluation": {"scale": "tiny", "scores": {"sWUGGY": 61.0, "ASR WER": 85.5, "tts_duration_s": 2.0}},
        "samples": [{"task": "tts", "prompt_text": "hello <b>", "prompt_audio": "prompt.wav", "output_audio": "out.wav"},
                    {"task": "asr", "prompt_audio": "prompt.wav", "output_text": "a transcript"}],
        "isoflop": {"plots": ["iso.png"], "summary": {"b_N": 0.4}},
        "settings": {"seed": 0},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_report_files_and_numbers(summary_dir):
    from sodakit.cli import main as cli_main

    assert cli_main(["report", str(summary_dir / "summary.json")]) == 0
    out = summary_dir / "report"
    page = (out / "index.html").read_text()
    assert page.count("<audio") == 3 and page.count("<img") == 2
    assert "hello &lt;b&gt;" in page  # text is escaped
    for name in SODA_PUBLISHED:
        assert name in page
    record = json.loads((out / "report.json").read_text())
    assert record["evaluation"]["scores"]["sWUGGY"] == 61.0
    assert record["training"]["last_record"]["val_loss"] == 4.0
    md = (out / "report.md").read_text()
    assert "| this run | - | 61.0 |" in md and "![loss curves](assets/" in md
    for src in re.findall(r'src="([^"]+)"', page):
        assert (out / src).is_file()


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


def _chromedriver() -> str | None:
    return shutil.which("chromedriver")


@pytest.mark.skipif(_chromedriver() is None or shutil.which("chromium") is None,
                    reason="headless Chromium + chromedriver not installed (Debian packages chromium chromium-driver)")
def test_every_image_and_audio_loads_in_headless_chromium(summary_dir, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    out = summary_dir / "report"
    build_report(json.loads((summary_dir / "summary.json").read_text()), out, base_dir=summary_dir)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(_chromedriver()), options=options)
    try:
        driver.set_script_timeout(60)
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        result = driver.execute_async_script(CHECK_SCRIPT)
    finally:
        driver.quit()
        server.shutdown()
    assert len(result["images"]) == 2 and len(result["audio"]) == 3
    assert all(i["ok"] for i in result["images"]), result
    assert all(a["ok"] for a in result["audio"]), result
