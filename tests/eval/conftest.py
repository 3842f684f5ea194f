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
