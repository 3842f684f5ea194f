from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
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


CHECKER = """<!doctype html><html><body><pre id="result">pending</pre>
<iframe id="f" src="index.html" style="width:1200px;height:800px"></iframe>
<script>
async function check() {
  const doc = document.getElementById('f').contentDocument;
  const out = {images: [], audio: []};
  for (const img of doc.images) {
    let ok = true; try { await img.decode(); } catch (e) { ok = false; }
    out.images.push({src: img.getAttribute('src'), ok: ok && img.naturalWidth > 0});
  }
  for (const a of doc.querySelectorAll('audio')) {
    let ok = false, err = '';
    try {
      const r = await fetch(a.getAttribute('src'));
      const buf = await r.arrayBuffer();
      const ctx = new OfflineAudioContext(1, 1, 44100);
      const decoded = await ctx.decodeAudioData(buf);
      ok = r.ok && decoded.duration > 0 && a.error === null;
    } catch (e) { err = String(e); }
    out.audio.push({src: a.getAttribute('src'), ok, err});
  }
  document.getElementById('result').textContent = 'RESULT' + JSON.stringify(out) + 'END';
}
document.getElementById('f').addEventListener('load', () => check());
</script></body></html>"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (Debian package chromium)")
def test_every_image_and_audio_loads_in_headless_chromium(summary_dir, tmp_path):
    out = summary_dir / "report"
    build_report(json.loads((summary_dir / "summary.json").read_text()), out, base_dir=summary_dir)
    (out / "_check.html").write_text(CHECKER)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/_check.html"
        cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={tmp_path / 'profile'}",
               "--virtual-time-budget=20000", "--dump-dom", url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    m = re.search(r"RESULT(.*?)END", proc.stdout, re.S)
    assert m, f"checker did not finish: {proc.stdout[-500:]} {proc.stderr[-1500:]}"
    result = json.loads(m.group(1).replace("&quot;", '"'))
    assert len(result["images"]) == 2 and len(result["audio"]) == 3
    assert all(i["ok"] for i in result["images"]), result
    assert all(a["ok"] for a in result["audio"]), result
