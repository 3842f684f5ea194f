"""Generation: KV-cache sampling with modality constraints and guards, task prompts, S2ST translation.

    from sodakit.model.bundle import load_bundle
    from sodakit.generate import SodaGenerator, generate, GenerationConfig, SamplingConfig

See docs/generation.md and the module docstrings: decoding (the decoding loop), constraints (logit masks),
sampling (choosing a token from logits), silence, prompts, tasks, s2st, commands (CLI). Scoring what is
generated is evaluation's job (`sodakit.eval`, e.g. the s2st task).
"""

from sodakit.generate.constraints import ModalityConstraints
from sodakit.generate.decoding import FrameEvent, Generation, GenerationConfig, generate
from sodakit.generate.sampling import SamplingConfig
from sodakit.generate.tasks import SodaGenerator, TaskOutput

__all__ = [
    "FrameEvent",
    "Generation",
    "GenerationConfig",
    "ModalityConstraints",
    "SamplingConfig",
    "SodaGenerator",
    "TaskOutput",
    "generate",
]
