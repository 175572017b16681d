"""Deterministic tiny random chat models, built locally with no model hub.

``build_tiny_model`` writes a complete Hugging Face model folder (config, float32
safetensors weights, generation config, a byte-level BPE tokenizer trained on an
embedded corpus, a Phi-3 style chat template) that transformers loads offline and
onnxruntime-genai's model builder exports. The weights are random: the model talks
nonsense, but every stage of a pipeline (LoRA, ONNX export, quantisation,
generation) runs on it in seconds on a CPU, which is what rehearsals and tests need.

Same arguments, same bytes: the tokenizer trainer, the weight initialisation and
every JSON file are deterministic, so cache keys derived from file hashes are stable.

    python -m olivepipe.models.tinymodel OUT --arch phi3
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ARCHITECTURES: tuple[str, ...] = ("phi3", "llama", "mistral", "qwen2")

# Chat tokens of the Phi-3 family; each must stay ONE token id. Order fixes the ids
# (the trainer numbers special tokens first), so pad/bos/eos land on 0/1/2.
PAD, BOS, EOS = "<pad>", "<s>", "<|endoftext|>"
CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, *CHAT_TOKENS)

# Byte-level BPE needs all 256 byte symbols plus the special tokens before any merge.
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS) + 32

# Phi-3-mini-instruct's template, verbatim in behaviour.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

# Training text for the tokenizer: plain travel-guide English, so that common words
# become single tokens and tokenized prompts stay short.
CORPUS = """\
The best thing to see in Chicago is the lake front on a clear summer morning.
Take the train from the airport to the city center; it is cheap and fast.
Paris is beautiful in spring, when the parks are green and the cafes are full.
In Rome, visit the old forum early before the crowds and the heat arrive.
Tokyo has quiet temples next to busy streets full of bright lights and shops.
If you travel to London, buy a transit card and ride the double decker bus.
The museum opens at nine and closes at five, except on Monday when it is closed.
A good hotel near the station saves time when you arrive late at night.
Pack light clothes, a rain jacket and comfortable shoes for long walks.
Ask the local people where they eat; the small places often have the best food.
New York is famous for its museums, its theaters and its long walks in the park.
The mountains are cold at night, so bring a warm coat even in the summer.
Our flight was delayed for two hours, but the airline gave us free coffee.
You can rent a bike and ride along the river to see the old bridges.
Seattle is known for rain, coffee, the market by the water and the tall tower.
Book the tickets online to skip the line at the castle and the cathedral.
The beach is quiet in the early morning, and the water is calm and clear.
What is the best time to visit? Most people say late spring or early autumn.
Where can I find a cheap place to stay near the old town and the harbor?
How long does it take to walk from the hotel to the main square?
The guide told us the story of the city, its kings, its wars and its markets.
Try the street food in the night market, but drink only bottled water.
Trains in the country are clean, on time and easy to use with a simple pass.
We took a boat to the island and watched the sun go down over the sea.
Chicago has great pizza, tall buildings and a river that runs through the city.
In the winter the lake is frozen and the wind from the water is very strong.
San Francisco has steep hills, old cable cars and a famous red bridge.
A map, a phone and a little patience will help you find every small street.
The national park has long trails, wild animals and views of the valley below.
Remember to check the weather, carry your passport and keep your money safe.
Thank you for the help! Have a great trip and enjoy every day of your journey.
what is the best thing to see in chicago? the art museum and the river walk.
what should i see in paris in one day? start with the river, then the old church.
where is a good place to eat near the train station? try the small cafe on the corner.
how do i get from the airport to the hotel? take the blue line, then walk ten minutes.
"""


def build_tiny_model(
    out_dir: Path,
    arch: str = "phi3",
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int | None = None,
    intermediate: int | None = None,
    vocab_size: int = 512,
    max_position: int = 512,
    seed: int = 0,
) -> dict[str, Any]:
    """Write a tiny random causal LM plus tokenizer into ``out_dir``; return a summary.

    ``out_dir`` must not exist or be empty. ``kv_heads`` defaults to ``heads`` (no
    grouped-query attention). ``intermediate`` defaults to ``4 * hidden``, raised in
    steps of 16 while the MLP projection would be exactly ``vocab_size`` wide (see
    ``_check_widths``; with the defaults this makes phi3's 272, llama's 256).
    """
    out_dir = Path(out_dir)
    kv_heads = heads if kv_heads is None else kv_heads
    _check_shape(arch, layers, hidden, heads, kv_heads, vocab_size, max_position)
    if intermediate is None:
        intermediate = 4 * hidden
        while _mlp_width(arch, intermediate) == vocab_size:
            intermediate += 16
    _check_widths(arch, hidden, heads, kv_heads, intermediate, vocab_size)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not an empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = _train_tokenizer(vocab_size)
    ids = {tok: tokenizer.token_to_id(tok) for tok in SPECIAL_TOKENS}

    model = _make_model(arch, layers, hidden, heads, kv_heads, intermediate,
                        vocab_size, max_position, seed, ids)
    _save_model(model, out_dir)
    # Replaces save_pretrained's: minimal, and free of the transformers version.
    _write_json(out_dir / "generation_config.json", {
        "bos_token_id": ids[BOS],
        # Stop at end of turn as well as end of text, as Phi-3 does.
        "eos_token_id": [ids["<|end|>"], ids[EOS]],
        "pad_token_id": ids[PAD],
    })
    (out_dir / "tokenizer.json").write_text(tokenizer.to_str(pretty=True) + "\n", encoding="utf-8", newline="\n")
    _write_tokenizer_config(out_dir, ids, max_position)

    return {
        "arch": arch,
        "architecture": type(model).__name__,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": vocab_size,
        "tokenizer_vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        "special_tokens": ids,
        "shape": {"layers": layers, "hidden": hidden, "heads": heads, "kv_heads": kv_heads,
                  "intermediate": intermediate, "max_position": max_position, "seed": seed},
        "files": sorted(p.name for p in out_dir.iterdir()),
    }


def _check_shape(arch, layers, hidden, heads, kv_heads, vocab_size, max_position) -> None:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    for name, value in (("layers", layers), ("hidden", hidden), ("heads", heads),
                        ("kv_heads", kv_heads), ("vocab_size", vocab_size), ("max_position", max_position)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    if (hidden // heads) % 16:
        # onnxruntime's CPU GroupQueryAttention kernel rejects other head sizes at run time.
        raise ValueError(f"head size hidden/heads = {hidden // heads} must be a multiple of 16 "
                         "(onnxruntime's GroupQueryAttention requires it)")
    if heads % kv_heads:
        raise ValueError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be at least {MIN_VOCAB_SIZE} "
                         f"(256 byte symbols + {len(SPECIAL_TOKENS)} special tokens + merges)")


def _mlp_width(arch: str, intermediate: int) -> int:
    return 2 * intermediate if arch == "phi3" else intermediate  # phi3 fuses gate_up_proj


def _check_widths(arch, hidden, heads, kv_heads, intermediate, vocab_size) -> None:
    # onnxruntime-genai's model builder (0.14) takes *any* Linear with
    # out_features == vocab_size for the LM head: such a layer is exported as a second
    # LM head and the ONNX model silently computes garbage. So none may be that wide.
    if not isinstance(intermediate, int) or isinstance(intermediate, bool) or intermediate < 1:
        raise ValueError(f"intermediate must be a positive integer, got {intermediate!r}")
    head_dim = hidden // heads
    widths = {"hidden": hidden, "mlp": _mlp_width(arch, intermediate)}
    if arch == "phi3":
        widths["qkv_proj"] = (heads + 2 * kv_heads) * head_dim
    else:
        widths["k_proj/v_proj"] = kv_heads * head_dim
    for name, width in widths.items():
        if width == vocab_size:
            raise ValueError(f"vocab_size {vocab_size} equals the {name} projection width of this {arch} model; "
                             "onnxruntime-genai's builder would mistake that layer for the LM head")


def _train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    # Byte-level: every string is encodable, so no <unk> is needed.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(keepends=True), trainer=trainer)

    # A small corpus runs out of merges before large vocab sizes; fill the rest with
    # unreachable placeholder entries so tokenizer and embedding sizes agree exactly.
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    n = len(vocab)
    for i in range(vocab_size - n):
        vocab[f"<|reserved_{i}|>"] = n + i
    tok = Tokenizer.from_str(json.dumps(spec))
    assert tok.get_vocab_size(with_added_tokens=True) == vocab_size
    return tok


def _make_model(arch, layers, hidden, heads, kv_heads, intermediate, vocab_size, max_position, seed, ids):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Phi3Config, Qwen2Config

    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_position,
        hidden_act="silu",
        rope_theta=10000.0,
        rope_scaling=None,  # plain RoPE: the builder then needs no scaling tables
        tie_word_embeddings=False,  # separate lm_head, as the builder and LoRA targets expect
        pad_token_id=ids[PAD],
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        use_cache=True,
    )
    if arch == "phi3":
        # original == max keeps the builder on Phi3MiniModel (no LongRoPE caches).
        config = Phi3Config(**common, original_max_position_embeddings=max_position)
    elif arch == "llama":
        config = LlamaConfig(**common, head_dim=hidden // heads)
    elif arch == "mistral":
        config = MistralConfig(**common, head_dim=hidden // heads, sliding_window=None)
    else:
        config = Qwen2Config(**common, use_sliding_window=False)

    # fork_rng: seed the initialisation without disturbing the caller's RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()


def _save_model(model, out_dir: Path) -> None:
    import shutil

    from transformers.utils import logging as hf_logging

    # save_pretrained writes config.json (sorted keys) and the weights in checkpoint
    # layout; its progress bar would only clutter the caller's log.
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out_dir, safe_serialization=True)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    # safetensors creates its file 0600 (temp file + rename); give it the same mode
    # as the other files so a shared cache stays readable.
    shutil.copymode(out_dir / "config.json", out_dir / "model.safetensors")


def _write_tokenizer_config(out_dir: Path, ids: dict[str, int], max_position: int) -> None:
    added = {
        str(ids[tok]): {"content": tok, "lstrip": False, "normalized": False, "rstrip": False,
                        "single_word": False, "special": True}
        for tok in SPECIAL_TOKENS
    }
    _write_json(out_dir / "tokenizer_config.json", {
        "add_bos_token": False,
        "add_eos_token": False,
        "added_tokens_decoder": added,
        "bos_token": BOS,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS,
        "model_max_length": max_position,
        "pad_token": PAD,
        # The generic fast class: uses tokenizer.json as is, in transformers 4 and 5,
        # and onnxruntime-extensions reads it as a Hugging Face JSON tokenizer.
        "tokenizer_class": "PreTrainedTokenizerFast",
    })
    _write_json(out_dir / "special_tokens_map.json", {
        "additional_special_tokens": list(CHAT_TOKENS),
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
    })


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                    encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m olivepipe.models.tinymodel", description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="output folder (must not exist or be empty)")
    p.add_argument("--arch", choices=ARCHITECTURES, default="phi3")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=None)
    p.add_argument("--intermediate", type=int, default=None)
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--max-position", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        info = build_tiny_model(a.out, a.arch, layers=a.layers, hidden=a.hidden, heads=a.heads,
                                kv_heads=a.kv_heads, intermediate=a.intermediate,
                                vocab_size=a.vocab_size, max_position=a.max_position, seed=a.seed)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
