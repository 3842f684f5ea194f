"""Small packed datasets with a tiny vocabulary, written with the real packed-format writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sodakit.data.packed import PACKED_FORMAT, ShardWriter, token_counts, write_metadata
from sodakit.model.load import read_pretrained
from sodakit.model.sharded import SHARDS_DIR, is_optimizer_key
from sodakit.tokens.vocab import Vocab

VOCAB = Vocab(text_vocab_size=64, bos_id=1, eos_id=2, num_codebooks=2, codebook_size=16)
# Words of the small fine-tuning sets (a BPE trained on them covers every prompt and response).
SFT_WORDS = "red green blue cat dog bird one two three four five six seven eight nine ten".split()


def checkpoint_tensors(ckpt: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(full weights, optimizer state tensors as stored) of a training checkpoint of either format; a sharded
    checkpoint's optimizer tensors are its ranks' pieces (whole when one rank wrote it)."""
    weights, _ = read_pretrained(ckpt)
    if (ckpt / SHARDS_DIR).is_dir():
        optim = {}
        for f in sorted((ckpt / SHARDS_DIR).glob("*.safetensors")):
            optim.update({k: v for k, v in load_file(str(f)).items() if is_optimizer_key(k)})
    else:
        optim = load_file(str(ckpt / "optimizer.safetensors"))
    return weights, optim


@pytest.fixture(autouse=True)
def one_thread():
    # The CPU is shared; one thread keeps small ops fast and results reproducible.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sft_pairs(path: Path, n: int = 8, seed: int = 0) -> Path:
    """A JSONL of n prompt/response pairs (SODA strings over a 2 x 16 audio layout) for `prepare_jsonl`."""
    rng = np.random.default_rng(seed)
    audio = "".join(chr(0xE000 + k * 16 + c) for c in rng.integers(0, 16, 3) for k in range(2))
    lines = []
    for i in range(n):
        q = " ".join(rng.choice(SFT_WORDS, 3))
        a = " ".join(rng.choice(SFT_WORDS, 2))
        prompt = f"<|text_start|>{q}<|text_end|><|audio_start|>{audio}<|audio_end|><|text_start|>"
        lines.append(json.dumps({"id": f"ex{i}", "prompt": prompt, "response": f"{a}<|text_end|>"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def make_packed(directory: Path, n_docs: int = 120, seed: int = 0, vocab: Vocab = VOCAB) -> Path:
    """Interleaved text-then-audio documents with learnable structure (audio codebook 1 follows codebook 0)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(directory, 0)
    counts = dict.fromkeys(("text", "bos_eos", "marker", "audio", "semantic"), 0)
    for _ in range(n_docs):
        start = int(rng.integers(3, 40))
        text = (start + np.arange(int(rng.integers(3, 12)))) % (vocab.text_vocab_size - 3) + 3
        codes0 = rng.integers(0, vocab.codebook_size, int(rng.integers(2, 10)))
        codes = np.stack([codes0, (codes0 * 3 + 1) % vocab.codebook_size])
        doc = np.concatenate(
            [[vocab.bos_id, vocab.text_start_id], text, [vocab.text_end_id, vocab.audio_start_id],
             vocab.codes_to_ids(codes), [vocab.audio_end_id, vocab.eos_id]]
        ).astype(np.uint32)
        writer.add(doc)
        for k, v in token_counts(doc, vocab).items():
            counts[k] += v
    info = writer.finish()
    write_metadata(
        directory,
        {
            "format": PACKED_FORMAT,
            "vocab": vocab.to_dict(),
            "codec": {"name": "test", "config_hash": "0" * 8, "sample_rate": 24000, "frame_rate": 12.5,
                      "num_codebooks": vocab.num_codebooks, "codebook_size": vocab.codebook_size},
            "tokenizer": None,
            "num_documents": n_docs,
            "num_tokens": info["num_tokens"],
            "counts": counts,
            "shards": [info],
        },
    )
    return directory


@pytest.fixture(scope="session")
def packed(tmp_path_factory) -> tuple[Path, Path]:
    """(training data, held-out data)."""
    root = tmp_path_factory.mktemp("packed")
    return make_packed(root / "train", 150, seed=0), make_packed(root / "val", 30, seed=1)
