"""olivepipe trains on exactly the tokens `olive finetune` trains on (the lab's template and sample).

Both configs go through Olive's own RunConfig and its training-dataset builder; the sequences
must be identical, token for token."""
from __future__ import annotations

import copy
import shutil

import pytest

from conftest import SHARED_TRAVEL, write

pytestmark = pytest.mark.e2e

LAB_TEMPLATE = "<|user|>\n{prompt}<|end|>\n<|assistant|>\n{response}<|end|>"


def _sequences(config: dict) -> list[list[int]]:
    from olive.passes.pytorch.train_utils import get_training_dataset
    from olive.workflows.run.config import RunConfig

    run = RunConfig.model_validate(copy.deepcopy(config))  # fills model_name into the data config
    data = {d.name: d for d in run.data_configs}
    (pass_cfg,) = config["passes"].values()
    ds = get_training_dataset(data[pass_cfg["train_data_config"]])
    return [list(map(int, row["input_ids"])) for row in ds]


@pytest.mark.skipif(not SHARED_TRAVEL.exists(), reason="the lab's travel sample is not beside the repository")
def test_lora_preprocessing_matches_olive_finetune(tmp_path):
    from olive.cli.launcher import get_cli_parser

    from olivepipe.report.preview import compile_preview
    from olivepipe.models.tinymodel import build_tiny_model
    from olivepipe.flow.workspace import open_workspace

    build_tiny_model(tmp_path / "base", "phi3", layers=1, hidden=64, heads=4, vocab_size=512)
    shutil.copyfile(SHARED_TRAVEL, tmp_path / "travel.jsonl")  # a private copy, outside the project
    wf = write(tmp_path / "workflow.yaml", f"""\
olivepipe: 1
name: parity
models:
  base: {{path: base}}
datasets:
  travel: {{files: travel.jsonl, text_template: {LAB_TEMPLATE!r}}}
nodes:
  finetune: {{pass: lora, input: base, data: travel, params: {{max_steps: 100}}}}
""".replace("'", '"'))
    ours = compile_preview(open_workspace(wf), ["finetune"])["finetune"]

    args, unknown = get_cli_parser().parse_known_args([
        "finetune", "-m", str(tmp_path / "base"), "-d", "json", "--data_files", str(tmp_path / "travel.jsonl"),
        "--text_template", LAB_TEMPLATE.replace("\n", "\\n"), "--max_steps", "100", "-o", str(tmp_path / "cli-out")])
    cli = args.func(None, args, unknown)._get_run_config(str(tmp_path / "cli-tmp"))

    theirs_seq, ours_seq = _sequences(cli), _sequences(ours)
    assert len(ours_seq) == len(theirs_seq) > 0
    assert ours_seq == theirs_seq
    # the model is loaded the way the CLI loads it for training
    assert ours["input_model"]["load_kwargs"]["attn_implementation"] == "eager"
