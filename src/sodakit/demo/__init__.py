"""The embedded default: `sodakit demo` (see pipeline.py)."""

from sodakit.demo.pipeline import DemoConfig, main, run_demo

__all__ = ["DemoConfig", "main", "run_demo"]
