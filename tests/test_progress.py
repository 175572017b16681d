from olivepipe.run.progress import StepProgress, read_progress


def test_the_last_bar_of_a_trainer_log_is_the_progress(tmp_path):
    log = tmp_path / "finetune.log"
    log.write_bytes(b"[2026] Running pass lora\n"
                    b"  0%|          | 0/100 [00:00<?, ?it/s]\r 25%|##5       | 25/100 [00:10<00:30,  2.49it/s]"
                    b"\r 26%|##6       | 26/100 [00:10<00:29,  2.51it/s]")
    assert read_progress(log) == StepProgress(26, 100)


def test_a_described_bar_and_no_bar(tmp_path):
    log = tmp_path / "awq.log"
    log.write_text("AWQ: 100%|##########| 32/32 [04:59<00:00,  9.35s/it]\nsaving\n")
    p = read_progress(log)
    assert p == StepProgress(32, 32, "AWQ") and str(p) == "AWQ 32/32"
    log.write_text("no bars here 3/4 files\n")
    assert read_progress(log) is None
    assert read_progress(tmp_path / "missing.log") is None
