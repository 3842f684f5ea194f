"""Run `sodakit ...` in a child process that is SIGKILLed (or paused) at an exact point of its work.

The point is the n-th call of a function named `module:attribute.path` (e.g. `os:replace`,
`sodakit.data.packed:ShardWriter.finish`), optionally counting only calls whose arguments mention a string.
Nothing in sodakit knows about it: the child wraps the function before running the real command line, and
the kill is a real SIGKILL (no cleanup, no finally blocks), as a preempted job or an OOM killer would do.
Under torchrun (`rank_killed_at`) one rank is killed that way, and torchrun stops the others, as it does
when a node is lost.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# One thread: toy runs stay bit-reproducible on CPU and cheap on a shared machine.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"),
       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

_CHILD = r"""
import functools, importlib, os, signal, sys, time
import shutil  # first: it picks its fd-based rmtree by checking os.unlink's identity when imported
target, n, needle, action = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
module, path = target.split(":")
owner = importlib.import_module(module)
*parents, name = path.split(".")
for p in parents:
    owner = getattr(owner, p)
real = getattr(owner, name)
seen = [0]

@functools.wraps(real)
def wrapper(*args, **kwargs):
    if needle in repr((args, kwargs)):
        seen[0] += 1
        if seen[0] == n:
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            print(f"PAUSED pid={os.getpid()}", file=sys.stderr, flush=True)
            time.sleep(3600)
    return real(*args, **kwargs)

if os.environ.get("KILLPOINT_RANK", os.environ.get("RANK", "0")) == os.environ.get("RANK", "0"):
    setattr(owner, name, wrapper)  # (under torchrun: only on the rank to kill)
from sodakit.cli import main
sys.exit(main(sys.argv[5:]))
"""


def sodakit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m sodakit ARGS` to completion."""
    return subprocess.run([sys.executable, "-m", "sodakit", *args], env=ENV, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def killed_at(target: str, n: int, *args: str, needle: str = "", timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `sodakit ARGS`, SIGKILLed at the n-th matching call of `target`; fails if it never got there."""
    p = subprocess.run([sys.executable, "-c", _CHILD, target, str(n), needle, "kill", *args], env=ENV, cwd=REPO,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == -signal.SIGKILL, f"not killed at {target} #{n} (exit {p.returncode}):\n{p.stderr[-3000:]}"
    return p


def rank_killed_at(target: str, n: int, nproc: int, rank: int, *args: str, needle: str = "",
                   timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `sodakit ARGS` under torchrun with `nproc` ranks on gloo, rank `rank` SIGKILLed at the n-th matching
    call of `target`; fails unless the job ended by that kill."""
    script = Path(tempfile.mkdtemp()) / "killpoint_child.py"
    script.write_text(_CHILD)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
                        str(script), target, str(n), needle, "kill", *args], env={**ENV, "KILLPOINT_RANK": str(rank)},
                       cwd=REPO, capture_output=True, text=True, timeout=timeout)
    shutil.rmtree(script.parent, ignore_errors=True)
    assert p.returncode != 0 and "SIGKILL" in p.stderr, f"rank {rank} not killed at {target} #{n}:\n{p.stderr[-3000:]}"
    return p


def paused_at(target: str, n: int, *args: str, needle: str = "", timeout: float = 300) -> subprocess.Popen:
    """Start `sodakit ARGS` and return once it sleeps at the n-th matching call of `target` (still alive,
    holding whatever it holds there); the caller kills it."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, target, str(n), needle, "pause", *args], env=ENV,
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    assert proc.stderr is not None
    for line in proc.stderr:  # the child's stderr, until it reports the pause
        if line.startswith("PAUSED"):
            return proc
        if time.time() > deadline:
            break
    proc.kill()
    raise AssertionError(f"never paused at {target} #{n} (exit {proc.wait()})")
