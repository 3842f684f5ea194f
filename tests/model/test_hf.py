"""Hugging Face Qwen3ForCausalLM interop: logit parity on the same random weights, directory round trips."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import Qwen3ForCausalLM

from sodakit.model import hf
from sodakit.model.commands import export_hf, import_hf, main
from sodakit.model.config import ModelConfig, RopeScaling
from sodakit.model.load import list_checkpoints, load_pretrained, write_model_dir
from sodakit.model.qwen3 import build_model
from sodakit.tokens.vocab import Vocab

VOCAB = Vocab(text_vocab_size=200, bos_id=1, eos_id=2, num_codebooks=2, codebook_size=40)
SHAPES = {
    # GQA, head_dim != d_model / heads, Llama-3 rope scaling active within the sequence, untied embeddings
    "gqa_scaled": ModelConfig(
        vocab_size=VOCAB.size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=24, d_ff=96,
        max_seq_len=256, rope_scaling=RopeScaling(original_max_position_embeddings=64),
    ),
    # MHA without scaling
    "mha": ModelConfig(
        vocab_size=VOCAB.size, d_model=48, n_layers=3, n_heads=3, n_kv_heads=3, head_dim=16, d_ff=80,
        max_seq_len=256, rope_scaling=None,
    ),
    # tied embeddings, single kv head
    "mqa_tied": ModelConfig(
        vocab_size=VOCAB.size, d_model=32, n_layers=1, n_heads=4, n_kv_heads=1, head_dim=8, d_ff=64,
        max_seq_len=256, tie_embeddings=True,
    ),
}


def _word_tokenizer(path, vocab: Vocab):
    """A word-level text tokenizer with exactly the layout's text ids (BOS/EOS at theirs), saved to `path`."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    words = {f"w{i}": i for i in range(vocab.text_vocab_size)}
    words |= {"<unk>": 0, "<|begin_of_text|>": vocab.bos_id, "<|end_of_text|>": vocab.eos_id}
    words = {w: i for w, i in words.items() if w not in (f"w{vocab.bos_id}", f"w{vocab.eos_id}", "w0")}
    tok = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<|begin_of_text|>", "<|end_of_text|>")])
    tok.save(str(path))
    return path


def hf_logits(directory, ids):
    model = Qwen3ForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_export_parity_with_transformers(tmp_path, name):
    cfg = SHAPES[name]
    model = build_model(cfg, seed=0).eval()
    with torch.no_grad():  # break the symmetry of ones-initialised norms so they are checked too
        for n, p in model.named_parameters():
            if "norm" in n:
                p.add_(0.1 * torch.randn_like(p))
    out = hf.save_hf_dir(tmp_path / "hf", cfg, model.state_dict())
    ids = torch.randint(0, cfg.vocab_size, (2, 150))
    with torch.no_grad():
        ours = model(ids)
    theirs = hf_logits(out, ids)
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-4, f"max |logit diff| {diff}"
    raw = json.loads((out / "config.json").read_text())
    assert raw["rope_parameters"]["rope_type"] == ("default" if cfg.rope_scaling is None else "llama3")


def test_import_transformers_model_parity(tmp_path):
    cfg = SHAPES["gqa_scaled"]
    from transformers import Qwen3Config

    hcfg = hf.to_hf_config(cfg)
    theirs = Qwen3ForCausalLM(Qwen3Config(**{k: v for k, v in hcfg.items() if k not in ("architectures", "torch_dtype", "dtype")}))
    theirs.save_pretrained(tmp_path / "hf")
    ours, info = load_pretrained(tmp_path / "hf")
    assert info.source == "hf" and info.model_config == cfg
    ids = torch.randint(0, cfg.vocab_size, (2, 100))
    with torch.no_grad():
        diff = (ours(ids) - theirs.eval()(ids).logits).abs().max().item()
    assert diff <= 1e-4


def test_sharded_export_and_cli_round_trip(tmp_path):
    cfg = SHAPES["gqa_scaled"]
    model = build_model(cfg, seed=1)
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000007"
    write_model_dir(ckpt, model.state_dict(), cfg, VOCAB, codec={"name": "mimi"}, step=7)
    (ckpt / "COMPLETE").write_text("")
    assert list_checkpoints(tmp_path / "run") == [ckpt]
    tok = _word_tokenizer(tmp_path / "tokenizer.json", VOCAB)
    out = export_hf(tmp_path / "run", tmp_path / "hf", tokenizer=tok, max_shard_bytes=40_000)
    assert (out / hf.HF_INDEX).is_file() and len(list(out.glob("model-*.safetensors"))) > 1
    # a complete tokenizer in the checkpoint's layout, not a bare copy of the text tokenizer.json
    from transformers import AutoTokenizer

    assert (out / "tokenizer_config.json").is_file() and (out / "special_tokens_map.json").is_file()
    hf_tok = AutoTokenizer.from_pretrained(out)
    assert len(hf_tok) == VOCAB.size and (hf_tok.bos_token_id, hf_tok.eos_token_id, hf_tok.pad_token_id) == (1, 2, 2)
    assert hf_tok("w5<|audio_start|>" + chr(0xE000 + 40) + "<|audio_end|>")["input_ids"] == [
        1, 5, VOCAB.audio_start_id, VOCAB.audio_id(1, 0), VOCAB.audio_end_id]
    ids = torch.randint(0, cfg.vocab_size, (1, 50))
    with torch.no_grad():
        assert (model(ids) - hf_logits(out, ids)).abs().max().item() <= 1e-4
    # back into a sodakit directory with the CLI; the layout travels in the sidecar
    assert main(["import", str(out), str(tmp_path / "back")]) == 0
    back, info = load_pretrained(tmp_path / "back")
    assert info.source == "sodakit" and info.vocab == VOCAB and info.codec == {"name": "mimi"} and info.step == 7
    assert info.tokenizer_path is not None
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    assert main(["export", str(tmp_path / "back"), str(tmp_path / "hf_bf16"), "--dtype", "bfloat16"]) == 0
    assert json.loads((tmp_path / "hf_bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    from sodakit.cli import main as cli_main

    assert cli_main(["convert", "export", str(tmp_path / "back"), str(tmp_path / "hf_bf16")]) == 2  # exists: refused


def test_convert_takes_the_key_value_grammar(tmp_path, capsys):
    """`convert export|import` read typed configs (key=value, a YAML file); the flag and positional forms
    are other spellings and give the same result."""
    from sodakit.cli import main as cli_main

    cfg = SHAPES["mha"]
    model = build_model(cfg, seed=2)
    write_model_dir(tmp_path / "ckpt", model.state_dict(), cfg, VOCAB, codec=None)
    (tmp_path / "export.yaml").write_text("dtype: bfloat16\n")
    assert cli_main(["convert", "export", str(tmp_path / "export.yaml"), f"src={tmp_path / 'ckpt'}",
                     f"out={tmp_path / 'hf_keys'}", "shard_size_gb=0.00005"]) == 0
    assert main(["export", str(tmp_path / "ckpt"), str(tmp_path / "hf_flags"), "--dtype", "bfloat16",
                 "--shard-size-gb", "0.00005"]) == 0
    for out in ("hf_keys", "hf_flags"):
        assert json.loads((tmp_path / out / "config.json").read_text())["dtype"] == "bfloat16"
        assert (tmp_path / out / hf.HF_INDEX).is_file()
    assert sorted(p.name for p in (tmp_path / "hf_keys").iterdir()) == sorted(p.name for p in (tmp_path / "hf_flags").iterdir())
    assert cli_main(["convert", "import", f"src={tmp_path / 'hf_keys'}", f"out={tmp_path / 'back'}"]) == 0
    back, info = load_pretrained(tmp_path / "back")
    assert info.vocab == VOCAB
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v.to(torch.bfloat16).float()), k
    capsys.readouterr()
    assert cli_main(["convert", "export", str(tmp_path / "ckpt"), str(tmp_path / "x"), "dtype=float64"]) == 2
    assert "dtype=float64: choose one of" in capsys.readouterr().err
    assert cli_main(["convert", "export", str(tmp_path / "ckpt"), str(tmp_path / "x"), "extra"]) == 2
    assert "unexpected argument 'extra'" in capsys.readouterr().err


def test_bad_hf_directories_are_refused(tmp_path):
    cfg = SHAPES["mha"]
    out = hf.save_hf_dir(tmp_path / "hf", cfg, build_model(cfg, seed=0).state_dict())
    raw = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**raw, "attention_bias": True}))
    with pytest.raises(hf.HFFormatError, match="attention_bias"):
        load_pretrained(out)
    (out / "config.json").write_text(json.dumps({**raw, "num_hidden_layers": 4}))
    with pytest.raises(hf.HFFormatError, match="missing tensor 'model.layers.3"):
        load_pretrained(out)
    (out / "config.json").write_text(json.dumps({**raw, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1.0}}))
    with pytest.raises(hf.HFFormatError, match="yarn"):
        load_pretrained(out)
    with pytest.raises(hf.HFFormatError, match="not a Hugging Face directory"):
        import_hf(tmp_path, tmp_path / "x")
