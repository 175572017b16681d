"""The `generate` node: a chat smoke test with onnxruntime-genai, adapters included.

Loads the ONNX model folder, loads every adapter and activates each in turn, runs
the prompts and writes report.json / report.md with answers, token counts and
tokens/s. A model or adapter that does not load fails the node.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

DEFAULT_TEMPLATE = "<|user|>\n{prompt}<|end|>\n<|assistant|>\n"


def model_folder(model_cfg: dict) -> Path:
    cfg = model_cfg.get("config", {})
    path = Path(cfg["model_path"])
    return path.parent if path.suffix == ".onnx" else path


def find_adapters(folder: Path, model_cfg: dict, option) -> list[tuple[str, Path]]:
    if option == "none":
        return []
    if isinstance(option, list):
        return [(Path(p).stem, (folder / p)) for p in option]
    named = model_cfg.get("config", {}).get("constant_inputs_file_name")
    files = sorted(folder.glob("*.onnx_adapter"))
    if named and (folder / named).exists() and folder / named not in files:
        files.insert(0, folder / named)
    return [(p.stem.replace("adapter_weights", "adapter") if len(files) == 1 else p.stem, p) for p in files]


def generate(model_dir: Path, prompts: list[str], *, adapters: list[tuple[str, Path]], max_new_tokens: int = 64,
             template: str = DEFAULT_TEMPLATE) -> dict:
    import onnxruntime_genai as og

    t0 = time.perf_counter()
    model = og.Model(str(model_dir))
    tokenizer = og.Tokenizer(model)
    load_s = time.perf_counter() - t0
    og_adapters = None
    if adapters:
        og_adapters = og.Adapters(model)
        for name, path in adapters:
            if not path.exists():
                raise FileNotFoundError(f"adapter file {path.name} not found in the model folder")
            try:
                og_adapters.load(str(path), name)
            except Exception as e:
                raise RuntimeError(f"adapter {path.name} does not load: {e}") from None
    runs = []
    for adapter in ([n for n, _ in adapters] or [None]):
        for prompt in prompts:
            ids = tokenizer.encode(template.format(prompt=prompt))
            params = og.GeneratorParams(model)
            params.set_search_options(max_length=len(ids) + max_new_tokens, do_sample=False)
            gen = og.Generator(model, params)
            if adapter:
                gen.set_active_adapter(og_adapters, adapter)
            t1 = time.perf_counter()
            gen.append_tokens(ids)
            out = []
            while not gen.is_done() and len(out) < max_new_tokens:
                gen.generate_next_token()
                out.append(int(gen.get_next_tokens()[0]))
            secs = time.perf_counter() - t1
            runs.append({"adapter": adapter, "prompt": prompt, "answer": tokenizer.decode(out),
                         "prompt_tokens": len(ids), "new_tokens": len(out), "seconds": round(secs, 4),
                         "tokens_per_s": round(len(out) / secs, 1) if secs > 0 else None})
    return {"model_load_s": round(load_s, 3), "adapters": [n for n, _ in adapters], "runs": runs}


def run_generate(job: dict, out: Path) -> dict:
    """Worker side of kind `generate` (olivepipe/kinds/generate.py); writes into ``out``."""
    opts = job["options"]
    reports = []
    for inp in job["inputs"]:  # fan-in: every input model gets the same prompts
        folder = model_folder(inp["model"])
        adapters = find_adapters(folder, inp["model"], opts.get("adapters", "auto"))
        rep = generate(folder, opts["prompts"], adapters=adapters, max_new_tokens=opts.get("max_new_tokens", 64),
                       template=opts.get("chat_template", DEFAULT_TEMPLATE))
        rep["model"] = inp["name"]
        reports.append(rep)
    for rep in reports:  # the answers belong in the node's log too (`olivepipe logs FILE chat`)
        for r in rep["runs"]:
            print(f"{rep['model']}" + (f" + adapter {r['adapter']}" if r["adapter"] else "")
                  + f": {r['prompt']!r}\n  -> {r['answer']!r}  ({r['new_tokens']} tokens, {r['tokens_per_s']} tokens/s)",
                  flush=True)
    report = reports[0] if len(reports) == 1 else {"models": reports}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = []
    for rep in reports:
        lines += _markdown(rep)
    (out / "report.md").write_text("\n".join(lines))
    return {"model": None, "summary": {"runs": sum(len(r["runs"]) for r in reports)}}


def _markdown(report: dict) -> list[str]:
    lines = [f"# Chat smoke test: {report['model']}", ""]
    for r in report["runs"]:
        lines += [f"**{r['prompt']}**" + (f" (adapter `{r['adapter']}`)" if r["adapter"] else ""), "",
                  f"> {r['answer']}", "", f"{r['new_tokens']} tokens, {r['tokens_per_s']} tokens/s", ""]
    return lines
