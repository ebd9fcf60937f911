"""The latency benchmark's machinery (bench/latency.py) and the full-size random architecture it offers.

Timings are not asserted (speed goals live in the benchmark's figures, docs/PERFORMANCE.md); what is
asserted is that every path answers the same conversation with the same reply, so that the ratios it
reports compare the same work, and that the report carries every figure the issue names.
"""

from __future__ import annotations

import json
import math

from bench.latency import PATHS, main


def test_every_path_gives_the_same_reply_and_every_figure_is_reported(tmp_path, tiny_checkpoint):
    out = tmp_path / "latency.json"
    code = main(["--checkpoint", str(tiny_checkpoint), "--tokens", "12", "--repeats", "1", "--turns", "2",
                 "--audio-seconds", "4", "--json", str(out)])
    result = json.loads(out.read_text())
    assert code == 0 and result["all_paths_same_reply"]
    turns = result["turns"]
    assert list(turns) == ["1", "2"]
    assert turns["2"]["prompt_tokens"] > turns["1"]["prompt_tokens"] > 0
    for row in turns.values():
        assert tuple(row["paths"]) == PATHS
        assert row["completion_tokens"] > 1
        for path, figures in row["paths"].items():
            assert figures["same_reply"], path
            assert figures["ttft_ms"] > 0 and figures["total_ms"] >= figures["ttft_ms"], path
            assert math.isfinite(figures["tokens_per_s"]) and figures["tokens_per_s"] > 0, path
        assert set(row["app_over_worker"]) == {"/chat", "/v1"}
    assert result["decode_ms_per_minute_of_audio"] > 0
    assert "RANDOM WEIGHTS" in result["model"]


def test_the_full_size_random_model_has_qwen2_audio_7bs_architecture():
    import torch

    from model.tiny import build_full_size_model, build_processor

    processor = build_processor()
    model = build_full_size_model(processor.tokenizer, device="meta", dtype="bfloat16")  # shapes only, no memory
    parameters = sum(p.numel() for p in model.parameters())
    assert 8.3e9 < parameters < 8.5e9  # the published model: 8.4 B parameters, about 16.8 GB in bfloat16
    assert model.dtype == torch.bfloat16
    text, audio = model.config.text_config, model.config.audio_config
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size, text.vocab_size) == (4096, 32, 11008, 156032)
    assert (audio.d_model, audio.encoder_layers, audio.num_mel_bins) == (1280, 32, 128)
    assert model.config.audio_token_index == processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    assert model.config.tiny_random, "labelled random wherever the worker shows it"
