"""Generation: KV-cache sampling with modality constraints and guards, task prompts, S2ST evaluation.

    from sodakit.generate import SodaGenerator, generate, GenerationConfig, SamplingConfig

See README-generate (the lead's README section) and the module docstrings: decoding (the decoding loop),
constraints (logit masks), sampling (choosing a token from logits), silence, prompts, tasks,
s2st, commands (CLI).
"""

from sodakit.generate.constraints import ModalityConstraints
from sodakit.generate.decoding import FrameEvent, Generation, GenerationConfig, generate
from sodakit.generate.sampling import SamplingConfig
from sodakit.generate.tasks import SodaGenerator, TaskResult

__all__ = [
    "FrameEvent",
    "Generation",
    "GenerationConfig",
    "ModalityConstraints",
    "SamplingConfig",
    "SodaGenerator",
    "TaskResult",
    "generate",
]
