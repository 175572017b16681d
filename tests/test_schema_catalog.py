"""The published schema and the shipped Olive catalog stay in sync with their sources."""
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import REPO
from olivepipe.spec import schema
from olivepipe.olive.catalog import ALIASES, load_catalog
from olivepipe.core.versions import version


def test_published_schema_matches_code():
    assert (REPO / "schemas" / "workflow.schema.json").read_text() == schema.dumps()


@pytest.mark.parametrize("wf", sorted((REPO / "examples").rglob("workflow.yaml")) + sorted((REPO / "workflows").glob("*.yaml")),
                         ids=lambda p: p.parent.name + "/" + p.name)
def test_shipped_workflows_satisfy_schema(wf):
    jsonschema.validate(yaml.safe_load(wf.read_text()), json.loads((REPO / "schemas" / "workflow.schema.json").read_text()))


def test_aliases_resolve_to_real_passes():
    cat = load_catalog()
    for alias, target in ALIASES.items():
        assert target in cat.passes, alias


@pytest.mark.skipif(version("olive-ai") is None, reason="needs Olive")
def test_shipped_catalog_matches_installed_olive(tmp_path):
    out = tmp_path / "catalog.json"
    subprocess.run([sys.executable, "-m", "olivepipe.olive.catalog_gen", str(out)], check=True,
                   env={**os.environ, "CI": "1"}, capture_output=True)
    shipped = REPO / "olivepipe" / "olive" / f"catalog-olive-{version('olive-ai')}.json"
    assert json.loads(out.read_text()) == json.loads(shipped.read_text())


@pytest.mark.skipif(version("olive-ai") is None, reason="needs Olive")
def test_compiled_configs_pass_olive_validation(example):
    from olivepipe.report.preview import compile_preview, validate_with_olive
    from olivepipe.flow.workspace import open_workspace

    configs = compile_preview(open_workspace(example), [])
    assert set(configs) == {"finetune", "onnx", "adapters", "fp32", "base",
                            "eval-int4-lora", "eval-fp32-lora", "eval-int4-base"}
    for cfg in configs.values():
        validate_with_olive(cfg)
    assert configs["finetune"]["passes"]["finetune"]["train_data_config"] == "olivepipe_data"
