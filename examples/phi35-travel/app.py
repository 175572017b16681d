"""The lab's app.py: chat with the travel adapter through onnxruntime-genai.

Unchanged from the lab apart from two things: the paths (olivepipe's output folder,
or argv[1]) and the generation loop, because onnxruntime-genai 0.14 removed
`params.input_ids` and `compute_logits`: today's loop is `append_tokens` then
`generate_next_token`.
"""
import sys
import time

import onnxruntime_genai as og

model_dir = sys.argv[1] if len(sys.argv) > 1 else "outputs/phi35-travel/adapters"
prompt = sys.argv[2] if len(sys.argv) > 2 else "what is the best thing to see in chicago"

model = og.Model(model_dir)
adapters = og.Adapters(model)
adapters.load(f"{model_dir}/adapter_weights.onnx_adapter", "travel")

tokenizer = og.Tokenizer(model)
tokenizer_stream = tokenizer.create_stream()

params = og.GeneratorParams(model)
params.set_search_options(max_length=100, past_present_share_buffer=False)
input_ids = tokenizer.encode(f"<|user|>\n{prompt}<|end|>\n<|assistant|>\n")

generator = og.Generator(model, params)
generator.set_active_adapter(adapters, "travel")
generator.append_tokens(input_ids)

print(f"[Travel]: {prompt}")
start = time.time()
token_count = 0
while not generator.is_done():
    generator.generate_next_token()
    new_token = generator.get_next_tokens()[0]
    print(tokenizer_stream.decode(new_token), end="", flush=True)
    token_count += 1
print()
elapsed = time.time() - start
print(f"{token_count} tokens in {elapsed:.2f}s ({token_count / elapsed:.1f} tokens/s)")
