"""The tiny model builder: deterministic, loadable offline, chat tokens intact."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from olivepipe.models.tinymodel import ARCHITECTURES, CHAT_TOKENS, EOS, build_tiny_model

PROMPT = "<|user|>\nwhat is the best thing to see in chicago<|end|>\n<|assistant|>\n"
SPECIALS = ("<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "<|endoftext|>")
EXPECTED_FILES = ["config.json", "generation_config.json", "model.safetensors",
                  "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One default build per architecture, shared by the module (builds cost ~0.5 s)."""
    out = {}
    for arch in ("phi3", "llama"):
        path = tmp_path_factory.mktemp(arch) / "model"
        out[arch] = (path, build_tiny_model(path, arch))
    return out


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_architectures():
    assert {"phi3", "llama"} <= set(ARCHITECTURES)


def test_same_arguments_give_identical_bytes(built, tmp_path):
    path, _ = built["phi3"]
    again = tmp_path / "again"
    build_tiny_model(again, "phi3")
    assert _hashes(again) == _hashes(path)


def test_seed_changes_only_the_weights(built, tmp_path):
    path, _ = built["phi3"]
    other = tmp_path / "other"
    build_tiny_model(other, "phi3", seed=1)
    a, b = _hashes(path), _hashes(other)
    assert [n for n in a if a[n] != b[n]] == ["model.safetensors"]


@pytest.mark.parametrize("arch", ["phi3", "llama"])
def test_summary_and_files(built, arch):
    path, info = built[arch]
    assert info["files"] == EXPECTED_FILES == sorted(p.name for p in path.iterdir())
    assert info["arch"] == arch
    assert info["vocab_size"] == info["tokenizer_vocab_size"] == 512
    assert 150_000 < info["num_parameters"] < 3_000_000
    config = json.loads((path / "config.json").read_text())
    assert config["vocab_size"] == 512
    assert config["tie_word_embeddings"] is False
    assert config["dtype"] == "float32"
    if arch == "phi3":
        # Keeps onnxruntime-genai's builder on Phi3MiniModel (no LongRoPE).
        assert config["original_max_position_embeddings"] == config["max_position_embeddings"]


@pytest.mark.parametrize("arch", ["phi3", "llama"])
def test_special_tokens_are_single_ids(built, arch):
    path, info = built[arch]
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    for s in SPECIALS:
        ids = tok.encode(s, add_special_tokens=False)
        assert ids == [info["special_tokens"][s]], s
    ids = tok.encode(PROMPT, add_special_tokens=False)
    for s in ("<|user|>", "<|end|>", "<|assistant|>"):
        assert tok.convert_tokens_to_ids(s) in ids
    assert tok.decode(ids) == PROMPT
    assert tok.eos_token == EOS and tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id


@pytest.mark.parametrize("arch", ["phi3", "llama"])
def test_vocab_consistency(built, arch):
    path, _ = built[arch]
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    config = json.loads((path / "config.json").read_text())
    vocab = tok.get_vocab()
    assert len(tok) == len(vocab) == config["vocab_size"]
    assert sorted(vocab.values()) == list(range(config["vocab_size"]))
    gen = json.loads((path / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [vocab["<|end|>"], vocab["<|endoftext|>"]]
    assert config["eos_token_id"] == vocab["<|endoftext|>"]
    assert config["pad_token_id"] == vocab["<pad>"] and config["bos_token_id"] == vocab["<s>"]


def test_chat_template_renders(built):
    path, _ = built["phi3"]
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    messages = [{"role": "system", "content": "You are a travel guide."},
                {"role": "user", "content": "what is the best thing to see in chicago"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == ("<|system|>\nYou are a travel guide.<|end|>\n"
                    "<|user|>\nwhat is the best thing to see in chicago<|end|>\n<|assistant|>\n")
    full = messages + [{"role": "assistant", "content": "The lake."}]
    assert tok.apply_chat_template(full, tokenize=False).endswith("<|assistant|>\nThe lake.<|end|>\n<|endoftext|>")
    ids = tok.encode(text, add_special_tokens=False)
    assert ids.count(tok.convert_tokens_to_ids("<|end|>")) == 2


@pytest.mark.parametrize("arch", ["phi3", "llama"])
def test_loads_and_generates(built, arch):
    path, info = built[arch]
    model, loading = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, output_loading_info=True)
    assert not any(loading.values()), loading  # no missing/unexpected/mismatched weights
    assert model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == info["num_parameters"]
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    ids = torch.tensor([tok.encode(PROMPT, add_special_tokens=False)])
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids.shape[1] and int(out.max()) < info["vocab_size"]


@pytest.mark.parametrize("arch", ["phi3", "llama"])
def test_no_linear_is_as_wide_as_the_vocab(built, arch):
    # onnxruntime-genai's builder takes any Linear of vocab width for the LM head.
    path, info = built[arch]
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    wide = [n for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and m.out_features == info["vocab_size"]]
    assert wide == ["lm_head"]


def test_gqa_and_larger_vocab(tmp_path):
    info = build_tiny_model(tmp_path / "m", "llama", kv_heads=2, vocab_size=1024, layers=1)
    assert info["tokenizer_vocab_size"] == 1024 and info["shape"]["kv_heads"] == 2
    tok = AutoTokenizer.from_pretrained(tmp_path / "m", local_files_only=True)
    assert len(tok) == 1024
    assert all(len(tok.encode(t, add_special_tokens=False)) == 1 for t in CHAT_TOKENS)


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        build_tiny_model(tmp_path, "phi3")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("kwargs, match", [
    ({"arch": "gpt2"}, "unknown arch"),
    ({"hidden": 64, "heads": 8}, "multiple of 16"),
    ({"heads": 4, "kv_heads": 3}, "multiple of kv_heads"),
    ({"vocab_size": 256}, "at least"),
    ({"arch": "phi3", "intermediate": 256}, "LM head"),  # fused gate_up_proj: 512 wide
    ({"arch": "llama", "intermediate": 512}, "LM head"),
])
def test_rejects_bad_shapes(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_tiny_model(tmp_path / "m", **kwargs)
    assert not (tmp_path / "m").exists()
