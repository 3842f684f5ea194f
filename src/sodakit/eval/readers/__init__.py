"""Readers for the real layouts of the benchmark data sets (and the look-alike sets of bench-data).

Every reader returns a `ReadResult` (items, per-item errors, data source with checksum); see
`sodakit.eval.items`. Layouts:

- ZeroSpeech 2021 sWUGGY / sBLIMP: `zerospeech.read_zr2021(path, "lexical" | "syntactic")`
- Hugging Face Parquet (speed/sWUGGY, speed/sBLIMP, slprl/SALMon): `hf_parquet`
- SALMon release folder (`{part}/sample_{i}_{option}.wav`): `salmon.read_salmon`
- BLiMP JSONL: `blimp.read_blimp`; HellaSwag: `hellaswag.read_hellaswag_auto` (the dataset's JSONL / Parquet
  records via `hellaswag_original`, lm-eval's exact context; or the 6-lines text file, `read_hellaswag`)
- LibriSpeech (and the flat `trans.txt` mini layout): `librispeech.read_librispeech`
- Seed-TTS-eval `meta.lst`: `seedtts.read_seedtts`
"""
