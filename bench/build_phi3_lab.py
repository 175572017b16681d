"""A random-weight Phi-3.5-mini-instruct stand-in, built where it runs (no model hub).

    python bench/build_phi3_lab.py OUT --size full|small [--device cuda]

full: Phi-3.5-mini-instruct's exact config (hidden 3072, intermediate 8192, 32 layers,
32 heads and kv heads, vocab 32064, LongRoPE with its 48 long/short factors, 131072
positions, original 4096), bf16, 3.82 B parameters, ~7.6 GB of safetensors.
small: the same config with 2 layers, hidden 768 (8 heads of 96, so the same 48 LongRoPE
factors apply), intermediate 2048: every width AWQ's 128-wide groups need, in seconds.

Tokenizer: olivepipe's tiny-model trainer at vocab 32064 (byte-level BPE, Phi-3 chat
tokens, chat template), so the embedding and the tokenizer agree exactly.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# microsoft/Phi-3.5-mini-instruct config.json, rope_scaling (type longrope)
LONG_FACTOR = [
    1.0800000429153442, 1.1100000143051147, 1.1399999856948853, 1.340000033378601, 1.5899999141693115,
    1.600000023841858, 1.6200000047683716, 2.620000123977661, 3.2300000190734863, 3.2300000190734863,
    4.789999961853027, 7.400000095367432, 7.700000286102295, 9.09000015258789, 12.199999809265137,
    17.670000076293945, 24.46000099182129, 28.57000160217285, 30.420001983642578, 30.840002059936523,
    32.590003967285156, 32.93000411987305, 42.320003509521484, 44.96000289916992, 50.340003967285156,
    50.45000457763672, 57.55000305175781, 57.93000411987305, 58.21000289916992, 60.1400032043457,
    62.61000442504883, 62.62000274658203, 62.71000289916992, 63.1400032043457, 63.1400032043457,
    63.77000427246094, 63.93000411987305, 63.96000289916992, 63.970001220703125, 64.02999877929688,
    64.06999969482422, 64.08000183105469, 64.12000274658203, 64.41000366210938, 64.4800033569336,
    64.51000213623047, 64.52999877929688, 64.83999633789062,
]
SHORT_FACTOR = [
    1.0, 1.0199999809265137, 1.0299999713897705, 1.0299999713897705, 1.0499999523162842,
    1.0499999523162842, 1.0499999523162842, 1.0499999523162842, 1.0499999523162842, 1.0699999332427979,
    1.0999999046325684, 1.1099998950958252, 1.1599998474121094, 1.1599998474121094, 1.1699998378753662,
    1.2899998426437378, 1.339999794960022, 1.679999828338623, 1.7899998426437378, 1.8199998140335083,
    1.8499997854232788, 1.8799997568130493, 1.9099997282028198, 1.9399996995925903, 1.9899996519088745,
    2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346,
    2.0199997425079346, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914,
    2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914,
    2.0799996852874756, 2.0899996757507324, 2.189999580383301, 2.2199995517730713, 2.5899994373321533,
    2.729999542236328, 2.749999523162842, 2.8399994373321533,
]
SIZES = {
    "full": {"hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 32},
    "small": {"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 2, "num_attention_heads": 8,
              "num_key_value_heads": 8},
}
VOCAB = 32064


def build(out: Path, size: str, device: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, Phi3Config

    from olivepipe.models import tinymodel as tm

    t0 = time.time()
    out.mkdir(parents=True, exist_ok=False)
    tok = tm._train_tokenizer(VOCAB)
    ids = {t: tok.token_to_id(t) for t in tm.SPECIAL_TOKENS}
    dims = SIZES[size]
    assert dims["hidden_size"] // dims["num_attention_heads"] // 2 == len(LONG_FACTOR) == len(SHORT_FACTOR)
    cfg = Phi3Config(
        vocab_size=VOCAB, **dims, max_position_embeddings=131072, original_max_position_embeddings=4096,
        rope_theta=10000.0, rope_scaling={"type": "longrope", "long_factor": LONG_FACTOR, "short_factor": SHORT_FACTOR},
        rms_norm_eps=1e-5, hidden_act="silu", sliding_window=262144, attention_bias=False, tie_word_embeddings=False,
        initializer_range=0.02, pad_token_id=ids[tm.PAD], bos_token_id=ids[tm.BOS], eos_token_id=ids[tm.EOS],
        use_cache=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.eval()
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out, safe_serialization=True, max_shard_size="20GB")
    tm._write_json(out / "generation_config.json", {"bos_token_id": ids[tm.BOS], "eos_token_id": [ids["<|end|>"], ids[tm.EOS]],
                                                   "pad_token_id": ids[tm.PAD]})
    (out / "tokenizer.json").write_text(tok.to_str(pretty=True) + "\n", encoding="utf-8")
    tm._write_tokenizer_config(out, ids, 131072)
    return {"size": size, "params": n, "dims": dims, "seconds": round(time.time() - t0, 1),
            "bytes": sum(f.stat().st_size for f in out.iterdir())}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--device", default="cuda")
    a = p.parse_args()
    print(json.dumps(build(a.out, a.size, a.device)))
