"""Odd input found by the issue-19 review is a clean, one-line error (never a traceback)."""
from __future__ import annotations

import pytest

from conftest import cli


@pytest.mark.parametrize("text, why", [
    ('{"input_model": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper than 64 levels"),
    ('{"input_model": {"type": "HfModel", "model_path": "x"}, "passes": {"p": {"type": "LoRA", "r": '
     + "1" * 100_001 + "}}}", "a 100001-digit number"),
])
def test_import_of_hostile_json_is_a_clean_error(tmp_path, text, why):
    (tmp_path / "cfg.json").write_text(text)
    r = cli("import", tmp_path / "cfg.json", "-o", tmp_path / "out.yaml")
    assert r.returncode == 2 and why in r.stderr and "internal error" not in r.stderr, r.stderr
    assert not (tmp_path / "out.yaml").exists()


@pytest.mark.parametrize("body", ["[" * 100_000 + "]" * 100_000, '{"metrics": {"x": {"value": NaN}}}',
                                  '{"metrics": {"x": {"value": ' + "9" * 100_001 + "}}}"])
def test_a_pulled_metrics_file_that_is_hostile_is_unreadable_not_a_crash(tmp_path, body):
    from olivepipe.flow.metrics import read_result
    from olivepipe.stores.local import LocalStore

    store = LocalStore(tmp_path / "cache")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text(body)
    store.publish("f" * 64, tmp_path / "out", {"kind": "evaluate"})
    doc, why = read_result(store, "f" * 64)
    assert doc is None and "unreadable" in why
