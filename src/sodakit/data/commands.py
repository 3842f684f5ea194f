"""`sodakit pack [CONFIG.yaml] key=value ...`: build documents and pack them into token shards."""

from __future__ import annotations

from sodakit.config import Flag, parse_config_args
from sodakit.data.pack import PackConfig, pack

DESCRIPTION = """Pack documents into uint32 token shards + metadata.json.

examples:
  sodakit pack inputs=[tokenized/librispeech] output=packed/speech tokenizer=tok/
  sodakit pack kind=text inputs=[corpus.txt] output=packed/text tokenizer=tok/ vocab_from=packed/speech
  sodakit pack kind=soda column=text inputs=[soda_shard.parquet] output=packed/soda tokenizer=soda_tokenizer/
"""


def main(argv: list[str] | None = None) -> int:
    cfg, _ = parse_config_args(PackConfig, argv, "sodakit pack", DESCRIPTION,
                               flags=(Flag("quiet", "no progress output", const=True),))
    pack(cfg)
    return 0
