"""Tiny random-init judge models saved with save_pretrained, for testing the loading + plumbing paths."""

from __future__ import annotations

from pathlib import Path

import pytest


def _byte_level_alphabet() -> list[str]:
    """The 256 printable stand-ins of GPT-2-style byte-level BPE (what Whisper's tokenizer uses)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


WHISPER_SPECIALS = [
    "<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
    "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>",
]


def build_tiny_whisper(out: Path) -> Path:
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    torch.manual_seed(0)
    vocab = {ch: i for i, ch in enumerate(_byte_level_alphabet())}
    tok = WhisperTokenizer(vocab=vocab, merges=[], additional_special_tokens=WHISPER_SPECIALS[1:])
    ids = tok.convert_tokens_to_ids(WHISPER_SPECIALS)
    proc = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=16), tokenizer=tok)
    cfg = WhisperConfig(
        vocab_size=len(tok), num_mel_bins=16, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=1500, max_target_positions=24,
        pad_token_id=ids[0], bos_token_id=ids[0], eos_token_id=ids[0], decoder_start_token_id=ids[1],
    )
    model = WhisperForConditionalGeneration(cfg)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids[1], eos_token_id=ids[0], pad_token_id=ids[0], bos_token_id=ids[0],
        lang_to_id={"<|en|>": ids[2]}, task_to_id={"translate": ids[3], "transcribe": ids[4]},
        no_timestamps_token_id=ids[8], is_multilingual=True, max_length=24,
    )
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


def build_tiny_wavlm_xvector(out: Path) -> Path:
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    torch.manual_seed(0)
    cfg = WavLMConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, tdnn_dim=(16, 16), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1),
        xvector_output_dim=12, num_buckets=32, max_bucket_distance=100,
    )
    WavLMForXVector(cfg).save_pretrained(out)
    Wav2Vec2FeatureExtractor(sampling_rate=16_000, do_normalize=True, return_attention_mask=True).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("whisper-tiny-random"))


@pytest.fixture(scope="session")
def tiny_wavlm_dir(tmp_path_factory) -> Path:
    return build_tiny_wavlm_xvector(tmp_path_factory.mktemp("wavlm-tiny-random"))


# ---- a tiny random causal LM over a small SODA-style layout ----------------------------------------
TINY_LAYOUT = dict(text_vocab_size=300, bos_id=0, eos_id=1, num_codebooks=4, codebook_size=16)


def tiny_vocab():
    from sodakit.tokens.vocab import Vocab

    return Vocab(**TINY_LAYOUT)


def build_tiny_qwen3(vocab_size: int, seed: int = 0, max_positions: int = 512):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=max_positions,
        tie_word_embeddings=False, rope_theta=10000.0,
    )
    model = Qwen3ForCausalLM(cfg).eval()
    # Random init at std 0.02 gives near-uniform predictions; sharpen so that scores differ clearly.
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)
    return model


@pytest.fixture(scope="session")
def tiny_lm_model():
    return build_tiny_qwen3(tiny_vocab().size)


# ---- a toy codec (the Codec interface, deterministic, content-dependent, instant) -------------------
def make_toy_codec():
    import numpy as np
    import torch

    from sodakit.audio.codec import Codec

    class ToyCodec(Codec):
        """K=4 codebooks of 16 at 50 Hz from 16 kHz audio: cb0 = loudness bucket (rms dB -60..0),
        cb1 = zero-crossing-rate bucket, cb2 = (cb0 + cb1) % 16, cb3 = frame index % 16."""

        name = "toy"
        sample_rate = 16_000
        frame_rate = 50.0
        num_codebooks = 4
        codebook_size = 16
        semantic_codebooks = [0]  # noqa: RUF012

        @property
        def config_hash(self) -> str:
            return "toy-codec-1"

        def _encode_batch(self, wav, lengths):
            spf = self.samples_per_frame
            f = -(-wav.shape[1] // spf)
            x = torch.nn.functional.pad(wav, (0, f * spf - wav.shape[1])).reshape(wav.shape[0], f, spf)
            rms = x.pow(2).mean(-1).clamp_min(1e-12).sqrt()
            db = 20 * torch.log10(rms)
            c0 = ((db + 60) / 60 * 15).round().clamp(0, 15).long()
            zc = (x[..., 1:] * x[..., :-1] < 0).float().mean(-1)
            c1 = (zc * 15).round().clamp(0, 15).long()
            c2 = (c0 + c1) % 16
            c3 = torch.arange(f)[None, :].expand_as(c0) % 16
            return torch.stack([c0, c1, c2, c3], dim=1)

        def _decode_batch(self, codes, frames):
            spf = self.samples_per_frame
            out = []
            for b in range(codes.shape[0]):
                amp = 10 ** ((codes[b, 0, : int(frames[b])].float() / 15 * 60 - 60) / 20)
                t = np.arange(spf) / self.sample_rate
                out.append(np.concatenate([a * np.sin(2 * np.pi * 220 * t) for a in amp.numpy()]).astype(np.float32)
                           if int(frames[b]) else np.zeros(0, np.float32))
            return out

    return ToyCodec()


@pytest.fixture(scope="session")
def toy_codec():
    return make_toy_codec()


# ---- a small text tokenizer in a SODA layout matching the toy codec ---------------------------------
TOKENIZER_CORPUS = [
    "the cat sleeps on the mat", "the cats sleep on the mats", "a dog barks at the moon", "dogs bark at night",
    "she has eaten the apple", "they have eaten the apples", "who did you see", "what did she say",
    "Roof shingle removal: A man is sitting on a roof.", "he is using wrap to wrap a pair of skis.",
    "is ripping level tiles off.", "starts pulling up roofing on a roof.", "the lady swings and lands",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from sodakit.tokens.soda_tokenizer import SodaTokenizer
    from sodakit.tokens.text_tokenizer import train_bpe
    from sodakit.tokens.vocab import Vocab

    text = train_bpe(TOKENIZER_CORPUS * 3, vocab_size=300, min_frequency=2)
    vocab = Vocab(text_vocab_size=text.vocab_size, bos_id=text.bos_id, eos_id=text.eos_id,
                  num_codebooks=4, codebook_size=16)
    return SodaTokenizer(text, vocab)


def write_wav(path, wav, sr=16_000):
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav, sr)
    return path


def tone(seconds: float, amp: float, freq: float = 220.0, sr: int = 16_000):
    import numpy as np

    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype("float32")


def noise(seconds: float, amp: float, seed: int, sr: int = 16_000):
    import numpy as np

    return (amp * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype("float32")


class LoudnessOracleLM:
    """Prefers loud audio: log p(token) = cb0 code / 16 - 1 for codebook-0 tokens, -1 otherwise."""

    def __init__(self, vocab):
        self.vocab, self.vocab_size, self.max_positions = vocab, vocab.size, None

    def token_logprobs(self, input_ids):
        import torch

        t = input_ids[:, 1:]
        lo, hi = self.vocab.codebook_range(0)
        in0 = (t >= lo) & (t < hi)
        return torch.where(in0, (t - lo).float() / 16 - 1, torch.full_like(t, -1.0, dtype=torch.float32))


class ConstantLM:
    """Every token gets the same log-probability (default: uniform over the vocabulary)."""

    def __init__(self, vocab_size, value=None):
        import math

        self.vocab_size, self.max_positions = vocab_size, None
        self.value = -math.log(vocab_size) if value is None else value

    def token_logprobs(self, input_ids):
        import torch

        return torch.full((input_ids.shape[0], input_ids.shape[1] - 1), float(self.value))


class SequenceOracleLM:
    """log p = 0 for every token of a row that is one of `preferred` sequences, -1 otherwise
    (rows are compared after dropping trailing padding id `pad`)."""

    def __init__(self, vocab_size, preferred, pad=0):
        self.vocab_size, self.max_positions, self.pad = vocab_size, None, pad
        self.preferred = {tuple(int(i) for i in s) for s in preferred}

    def token_logprobs(self, input_ids):
        import torch

        out = torch.full((input_ids.shape[0], input_ids.shape[1] - 1), -1.0)
        for r, row in enumerate(input_ids.tolist()):
            while row and row[-1] == self.pad:
                row.pop()
            if tuple(row) in self.preferred:
                out[r] = 0.0
        return out
