"""--quantization 8bit|4bit on CPU (bitsandbytes' CPU build runs the same layers): each chat family's tiny
checkpoint loads quantized, only the language model's linear layers are quantized (the audio encoder, the
projector and lm_head stay as they were), the weights take less memory (measured), the badge says the
setting, and the worker's greedy reply equals transformers' own ``generate`` on the same quantized model."""

from __future__ import annotations

import logging

import pytest
import torch

from app.config import DemoConfig, load_config
from model import GenerationParams, ModelWorker
from model.errors import CheckpointLoadError
from model.families import UNQUANTIZED, meta_model
from model.loading import load_model_and_processor, resolve_placement
from model.quantization import (
    GIB,
    QUANTIZATION_CHOICES,
    bnb_config,
    fitting_setting,
    is_kept,
    memory_plan,
    weight_bytes,
)

GREEDY = GenerationParams(temperature=0, max_new_tokens=12, repetition_penalty=1.0)
FAMILIES = {"qwen2-audio": ("tiny_checkpoint", "Qwen2-Audio"), "qwen-audio-chat": ("tiny_qwen_audio_checkpoint", "Qwen-Audio")}


def load(checkpoint, mode: str):
    placement = resolve_placement("cpu", "float32", mode)
    model, processor = load_model_and_processor(checkpoint, placement)
    return model, processor, placement


@pytest.fixture(scope="module", params=[(f, m) for f in FAMILIES for m in ("8bit", "4bit")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def quantized(request):
    family_id, mode = request.param
    fixture, family = FAMILIES[family_id]
    checkpoint = request.getfixturevalue(fixture)
    model, processor, placement = load(checkpoint, mode)
    worker = ModelWorker(model, processor, checkpoint=str(checkpoint), placement=placement)
    yield worker, family, mode, checkpoint
    worker.shutdown()


def quantized_layers(model) -> dict[str, str]:
    import bitsandbytes as bnb

    kinds = (bnb.nn.Linear8bitLt, bnb.nn.Linear4bit)
    return {name: type(m).__name__ for name, m in model.named_modules() if isinstance(m, kinds)}


def test_only_the_language_model_is_quantized(quantized):
    worker, family, mode, _ = quantized
    keep = UNQUANTIZED[family]
    layers = quantized_layers(worker.model)
    assert layers and set(layers.values()) == {"Linear8bitLt" if mode == "8bit" else "Linear4bit"}
    assert not [n for n in layers if is_kept(n, keep)], "the audio encoder, projector or lm_head was quantized"
    plain = [n for n, m in worker.model.named_modules() if type(m) is torch.nn.Linear]
    for path in keep:  # every kept module exists and keeps plain float32 linear layers
        inside = [n for n in plain if is_kept(n, (path,))]
        assert inside, f"{path} names no linear layer of {family}"
        for name in inside:
            assert worker.model.get_submodule(name).weight.dtype == torch.float32, name
    # Every linear layer of the language model (outside the kept modules) is quantized.
    assert not [n for n in plain if not is_kept(n, keep)]


def test_the_weights_take_less_memory_as_measured_and_as_estimated(quantized, request, caplog):
    worker, family, mode, checkpoint = quantized
    measured = worker.model.get_memory_footprint()
    full = request.getfixturevalue("worker" if family == "Qwen2-Audio" else "qwen_audio_worker").model.get_memory_footprint()
    print(f"{family} {mode}: weights {measured / 2**20:.2f} MiB against {full / 2**20:.2f} MiB in float32")
    assert measured < full
    estimate = weight_bytes(meta_model(family, checkpoint), mode, UNQUANTIZED[family], "float32")
    # The estimate from the architecture alone is within 5% of what bitsandbytes allocated.
    assert abs(estimate.total - measured) / measured < 0.05, (estimate, measured)


def test_greedy_worker_reply_equals_generate_on_the_same_quantized_model(quantized, audio_dir):
    worker, _, _, _ = quantized
    messages = [{"role": "user", "content": [{"type": "audio", "audio": str(audio_dir / "tone_a.wav")},
                                             {"type": "text", "text": "What sound is this?"}]}]
    with worker.stream(messages, GREEDY) as reply:
        text = "".join(reply)
    inputs = worker.family_adapter.encode(worker.prepare(messages))
    with torch.inference_mode():
        out = worker.model.generate(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask,
                                    **inputs.audio_inputs(), do_sample=False, max_new_tokens=12, repetition_penalty=1.0)
    assert reply.token_ids == out[0, inputs.length:].tolist()
    assert text


def test_the_badge_and_the_log_say_the_setting(quantized):
    worker, family, mode, _ = quantized
    assert f"in {mode} (float32 elsewhere)" in worker.info.label
    assert worker.info.quantization == mode


def test_the_parameter_count_is_the_unquantized_models(quantized):
    # bitsandbytes packs 4-bit weights two to a byte: numel() alone would undercount them.
    worker, family, mode, checkpoint = quantized
    plain, _, _ = load(checkpoint, "none")
    assert worker.info.parameters == sum(p.numel() for p in plain.parameters())


def test_the_log_says_what_the_setting_needs_before_loading(tiny_checkpoint, caplog):
    with caplog.at_level(logging.INFO, logger="model.loading"):
        load(tiny_checkpoint, "4bit")
    lines = [r.getMessage() for r in caplog.records]
    plan = next(line for line in lines if line.startswith("quantization 4bit: the weights need about"))
    assert "GiB free" in plan
    assert any("4bit" in line and "the weights take" in line for line in lines)


def test_the_option_is_a_flag_an_env_variable_and_a_config_field():
    assert load_config(["--quantization", "4bit"]).quantization == "4bit"
    assert load_config([], environ={"QWEN_DEMO_QUANTIZATION": "8bit"}).quantization == "8bit"
    assert DemoConfig().quantization == "none"
    from model.errors import UserFacingError

    with pytest.raises(UserFacingError, match="quantization must be one of none, 8bit, 4bit"):
        DemoConfig(quantization="3bit")
    with pytest.raises(CheckpointLoadError, match="Unknown quantization"):
        resolve_placement("cpu", "float32", "2bit")


def test_skip_lists_are_full_paths_and_no_bare_name_slips_through():
    assert bnb_config("none", (), "float32") is None
    config = bnb_config("4bit", UNQUANTIZED["Qwen2-Audio"], "float32")
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert config.llm_int8_skip_modules == ["model.audio_tower", "model.multi_modal_projector", "lm_head"]
    assert bnb_config("8bit", UNQUANTIZED["Qwen-Audio"], "float16").llm_int8_skip_modules == ["transformer.audio", "lm_head"]
    assert is_kept("model.audio_tower.layers.0.fc1", ("model.audio_tower",))
    assert not is_kept("model.audio_tower_x.fc1", ("model.audio_tower",))


def test_full_size_7b_estimates_and_advice_on_a_small_gpu(tiny_checkpoint):
    # Qwen2-Audio-7B's architecture on the meta device (no memory): what each setting needs.
    from transformers import AutoTokenizer, Qwen2AudioForConditionalGeneration

    from model.tiny import full_size_config

    with torch.device("meta"):
        model = Qwen2AudioForConditionalGeneration(full_size_config(AutoTokenizer.from_pretrained(tiny_checkpoint)))
    needs = {m: weight_bytes(model, m, UNQUANTIZED["Qwen2-Audio"], "bfloat16").gib for m in QUANTIZATION_CHOICES}
    print({m: round(v, 2) for m, v in needs.items()})
    assert 15.0 < needs["none"] < 16.5 and needs["4bit"] < needs["8bit"] < needs["none"]
    assert fitting_setting(needs, 24.0) == "none"
    assert fitting_setting(needs, 12.0) == "8bit"
    assert fitting_setting(needs, needs["4bit"] + 2.0) == "4bit"
    advice = memory_plan(needs, "none", "cuda", 10.0)
    assert advice.startswith("quantization none: the weights need about 15.6 GiB; cuda has 10.0 GiB free.")
    assert "too little: use --quantization 4bit (7.0 GiB)" in advice
    assert memory_plan(needs, "4bit", "cuda", 2.0).endswith("Even 4bit does not fit: use a larger GPU or --device cpu.")
    assert needs["4bit"] * GIB > 0
