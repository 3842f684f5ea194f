"""`sodakit tokenize [CONFIG.yaml] input=... output=... codec=... [key=value ...]`."""

from __future__ import annotations

import json

from sodakit.audio.tokenize import TokenizeConfig, tokenize
from sodakit.config import Flag, parse_config_args

DESCRIPTION = """Encode an audio dataset into segment shards (Parquet, one row per segment) + manifest.json.

Input forms (kind=auto detects them): a LibriSpeech tree (*.trans.txt + .flac), a JSONL/CSV manifest
(audio, text, [id, recording_id, start, end, speaker]), a Hugging Face dataset saved with save_to_disk
(Audio + text columns), or a folder of audio files with same-named .txt transcripts.
Resumable: run the same command again after a crash; finished shards are skipped. Bad files go to
OUTPUT/errors.jsonl with the reason; they never stop the job.

examples:
  sodakit tokenize input=LibriSpeech/train-clean-100 output=tok/ls100 codec=kyutai/mimi
  sodakit tokenize input=data.jsonl output=tok/mine codec=./mimi workers=2 device=cpu
  sodakit tokenize input=wavs/ output=tok/demo codec=runs/offline-codec
  torchrun --nproc-per-node 8 -m sodakit.cli tokenize input=... output=... codec=kyutai/mimi
"""


def main(argv: list[str] | None = None) -> int:
    cfg, _ = parse_config_args(TokenizeConfig, argv, "sodakit tokenize", DESCRIPTION,
                               flags=(Flag("quiet", "no progress output", const=True),))
    summary = tokenize(cfg)
    print(json.dumps(summary, indent=2))
    return 0
