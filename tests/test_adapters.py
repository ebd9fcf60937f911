"""LoRA adapters (``--adapter``, ``--merge-adapter``) and fine-tuned full checkpoints.

Every adapter here is made in the test with peft itself on a tiny checkpoint, with random non-zero A and B
(peft starts B at zero, which would make an adapter a no-op and these tests unable to fail), and saved
with ``save_pretrained``. What our loader makes of it is compared with peft's own
``PeftModel.from_pretrained`` on the same inputs: the logits of one prompt with audio.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model import CheckpointLoadError, GenerationParams, ModelWorker
from model.adapters import adapter_parameters, locate_adapter, rename_legacy_paths
from model.loading import Placement, load_model_and_processor

GREEDY = GenerationParams(temperature=0, max_new_tokens=12)
#: transformers 5.x -> 4.x names of Qwen2-Audio's modules, as an adapter trained under 4.x has them.
TO_4X = (("model.language_model.", "language_model.model."), ("lm_head", "language_model.lm_head"),
         ("model.audio_tower.", "audio_tower."), ("model.multi_modal_projector.", "multi_modal_projector."))
CPU = Placement("cpu", "float32", None)


def tensor_names(weights: Path) -> list[str]:
    return list(load_file(weights))


def messages(audio_dir: Path) -> list[dict]:
    return [{"role": "user", "content": [{"type": "audio", "audio": str(audio_dir / "tone_a.wav")},
                                         {"type": "text", "text": "What do you hear?"}]}]


def logits(model, worker: ModelWorker, audio_dir: Path) -> torch.Tensor:
    """``model``'s logits on the prompt (text and audio) ``worker`` builds for :func:`messages`."""
    inputs = worker.family_adapter.encode(worker.prepare(messages(audio_dir)))
    with torch.inference_mode():
        return model(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, **inputs.audio_inputs()).logits


def make_lora(model, targets: list[str], out: Path, seed: int = 0) -> Path:
    """Wrap ``targets`` (full module paths) of ``model`` in a rank-4 LoRA with random non-zero A and B; save it."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    generator = torch.Generator().manual_seed(seed)
    for name, param in peft_model.named_parameters():
        if "lora_" in name:
            param.data = torch.randn(param.shape, generator=generator) * 0.1
    peft_model.save_pretrained(out)
    return out


def peft_reference(model, adapter: Path):
    """peft's own reading of ``adapter`` on ``model``."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter)).eval()


def base_model(checkpoint: Path, quantization: str = "none"):
    placement = CPU if quantization == "none" else Placement("cpu", "float32", {"": "cpu"}, quantization)
    return load_model_and_processor(checkpoint, placement)[0]


def rewrite(adapter: Path, out: Path, rename=lambda k: k, edit_tensors=None, edit_config=None) -> Path:
    """A copy of ``adapter`` with its tensor names renamed / its tensors or adapter_config.json edited."""
    out.mkdir(parents=True, exist_ok=True)
    tensors = {rename(k): v for k, v in load_file(adapter / "adapter_model.safetensors").items()}
    config = json.loads((adapter / "adapter_config.json").read_text())
    save_file(edit_tensors(tensors) if edit_tensors else tensors, out / "adapter_model.safetensors",
              metadata={"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps(edit_config(config) if edit_config else config))
    return out


def to_4x(name: str) -> str:
    prefix = "base_model.model."
    assert name.startswith(prefix)
    rest = name[len(prefix):]
    for new, old in TO_4X:
        if rest == new or rest.startswith(new if new.endswith(".") else new + "."):
            return prefix + old + rest[len(new):]
    return name


# ----------------------------------------------------------------------------- Qwen2-Audio
@pytest.fixture(scope="module")
def lora(tiny_checkpoint, tmp_path_factory) -> Path:
    """A LoRA on the language model's q_proj/v_proj, the audio tower's fc1, the projector and lm_head,
    its target_modules written as full (5.x) module paths."""
    model = base_model(tiny_checkpoint)
    targets = [name for name, _ in model.named_modules()
               if name.endswith(("self_attn.q_proj", "self_attn.v_proj")) and ".language_model." in name
               or (name.startswith("model.audio_tower.") and name.endswith(".fc1"))
               or name in ("model.multi_modal_projector.linear", "lm_head")]
    return make_lora(model, targets, tmp_path_factory.mktemp("lora") / "my-adapter")


@pytest.fixture(scope="module")
def lora_4x(lora, tmp_path_factory) -> Path:
    """The same adapter as transformers 4.x saved it: 4.x tensor names and 4.x full paths in target_modules."""
    def config_4x(config):
        config["target_modules"] = sorted(to_4x("base_model.model." + t)[len("base_model.model."):]
                                          for t in config["target_modules"])
        return config

    return rewrite(lora, tmp_path_factory.mktemp("lora-4x") / "my-adapter-4x", rename=to_4x, edit_config=config_4x)


@pytest.fixture(scope="module")
def workers(tiny_checkpoint, lora):
    """The worker on the plain checkpoint, with the adapter, and with the adapter merged (all CPU float32)."""
    made = {
        "base": ModelWorker.from_pretrained(str(tiny_checkpoint), device="cpu", dtype="float32"),
        "adapter": ModelWorker.from_pretrained(str(tiny_checkpoint), device="cpu", dtype="float32", adapter=str(lora)),
        "merged": ModelWorker.from_pretrained(str(tiny_checkpoint), device="cpu", dtype="float32", adapter=str(lora),
                                              merge_adapter=True),
    }
    yield made
    for name in ("adapter", "merged"):  # "base" is the session's shared worker
        made[name].shutdown()


def test_adapter_gives_peft_s_own_logits(workers, tiny_checkpoint, lora, audio_dir):
    ours = logits(workers["adapter"].model, workers["adapter"], audio_dir)
    reference = logits(peft_reference(base_model(tiny_checkpoint), lora), workers["adapter"], audio_dir)
    plain = logits(workers["base"].model, workers["base"], audio_dir)
    assert torch.equal(ours, reference)
    assert (ours - plain).abs().max() > 0.1, "the adapter must change the logits, or this test proves nothing"
    tensors = tensor_names(lora / "adapter_model.safetensors")
    assert any(".audio_tower." in t for t in tensors) and any("multi_modal_projector" in t for t in tensors)
    # peft also saves lm_head's own weight when it carries a LoRA (as it does for embeddings): 16 LoRA tensors + 1.
    assert workers["adapter"].model.loaded_adapter.tensors == len(tensors) == 17
    lora_weights = [n for n in adapter_parameters(workers["adapter"].model) if "lora_" in n]
    assert len(lora_weights) == len([t for t in tensors if "lora_" in t]) == 16


def test_merged_adapter_answers_like_the_unmerged_one(workers, audio_dir):
    from peft.tuners.tuners_utils import BaseTunerLayer

    unmerged, merged = workers["adapter"], workers["merged"]
    assert not any(isinstance(m, BaseTunerLayer) for m in merged.model.modules()), "merged = plain layers again"
    assert not getattr(merged.model, "_hf_peft_config_loaded", False)
    torch.testing.assert_close(logits(merged.model, merged, audio_dir), logits(unmerged.model, unmerged, audio_dir),
                               atol=1e-5, rtol=1e-5)
    with unmerged.stream(messages(audio_dir), GREEDY) as a, merged.stream(messages(audio_dir), GREEDY) as b:
        text_a, text_b = "".join(a), "".join(b)
    assert a.token_ids == b.token_ids and text_a == text_b and a.completion_tokens > 0


def test_the_label_and_info_name_the_adapter(workers):
    assert workers["adapter"].info.adapter == "my-adapter" and not workers["adapter"].info.adapter_merged
    assert "(Qwen2-Audio chat) + LoRA my-adapter on CPU" in workers["adapter"].info.label
    assert "+ LoRA my-adapter (merged) on CPU" in workers["merged"].info.label
    assert "LoRA" not in workers["base"].info.label and workers["base"].info.adapter == ""


def test_a_transformers_4x_adapter_loads_every_tensor(workers, tiny_checkpoint, lora, lora_4x, audio_dir, caplog):
    tensors = tensor_names(lora_4x / "adapter_model.safetensors")
    assert any(t.startswith("base_model.model.language_model.model.layers.") for t in tensors)
    assert any(t.startswith("base_model.model.audio_tower.") for t in tensors)
    assert "base_model.model.language_model.lm_head.lora_A.weight" in tensors
    assert all(t.startswith("language_model.model.") or not t.startswith("model.")
               for t in json.loads((lora_4x / "adapter_config.json").read_text())["target_modules"])
    with caplog.at_level(logging.INFO, logger="model.adapters"):
        model = load_model_and_processor(tiny_checkpoint, CPU, adapter=str(lora_4x))[0]
    assert "transformers 4.x layout" in caplog.text
    assert model.loaded_adapter.tensors == len(tensors) == 17  # LoRA's 16 and lm_head's own weight
    assert len([n for n in adapter_parameters(model) if "lora_" in n]) == len([t for t in tensors if "lora_" in t]) == 16
    assert torch.equal(logits(model, workers["adapter"], audio_dir), logits(workers["adapter"].model, workers["adapter"], audio_dir))


def test_legacy_paths_are_renamed_in_every_field():
    config = {"target_modules": ["language_model.model.layers.0.self_attn.q_proj", "q_proj", "language_model.lm_head",
                                 "audio_tower.layers.1.fc1", "multi_modal_projector.linear"],
              "modules_to_save": ["language_model.lm_head"], "rank_pattern": {"language_model.model.layers.1.self_attn.v_proj": 8}}
    renamed, names = rename_legacy_paths(config, "Qwen2-Audio")
    assert renamed["target_modules"] == ["model.language_model.layers.0.self_attn.q_proj", "q_proj", "lm_head",
                                         "model.audio_tower.layers.1.fc1", "model.multi_modal_projector.linear"]
    assert renamed["modules_to_save"] == ["lm_head"]
    assert renamed["rank_pattern"] == {"model.language_model.layers.1.self_attn.v_proj": 8}
    assert len(names) == 6 and config["target_modules"][0].startswith("language_model.")  # the input is left alone
    assert rename_legacy_paths({"target_modules": ".*q_proj"}, "Qwen2-Audio")[0] == {"target_modules": ".*q_proj"}


@pytest.mark.parametrize("case", ["missing", "unused", "shape", "matches-nothing"])
def test_an_adapter_that_does_not_fit_is_refused_naming_the_keys(case, tiny_checkpoint, lora, lora_4x, tmp_path):
    first = "base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight"
    edits = {
        "missing": dict(edit_tensors=lambda t: {k: v for k, v in t.items() if ".audio_tower.layers.1." not in k}),
        "unused": dict(edit_tensors=lambda t: t | {
            "base_model.model.language_model.model.layers.0.mlp.up_proj.lora_A.weight": torch.ones(4, 64)}),
        "shape": dict(edit_tensors=lambda t: t | {first: torch.ones(8, 64)}),
        "matches-nothing": dict(edit_config=lambda c: c | {"target_modules": ["no_such_proj"]}),
    }
    adapter = rewrite(lora_4x, tmp_path / case, **edits[case])
    with pytest.raises(CheckpointLoadError) as info:
        load_model_and_processor(tiny_checkpoint, CPU, adapter=str(adapter))
    message = info.value.user_message
    assert "\n" not in message and "Traceback" not in message
    expected = {
        "missing": "2 LoRA weights the model expects are not in it (model.audio_tower.layers.1.fc1.lora_A.default.weight, "
                   "model.audio_tower.layers.1.fc1.lora_B.default.weight)",
        "unused": "1 of its 18 tensors fit no module of the model (model.language_model.layers.0.mlp.up_proj.lora_A.weight)",
        "shape": "the model's weights have another shape for 1 of its tensors "
                 "(model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight)",
        "matches-nothing": "Cannot apply the adapter",
    }[case]
    assert expected in message, message


def test_the_adapter_is_checked_before_the_model_loads(tiny_checkpoint, lora, tmp_path, monkeypatch):
    from model import worker as worker_module

    def must_not_load(*args, **kwargs):
        raise AssertionError("the base model was loaded before the adapter was checked")

    monkeypatch.setattr(worker_module, "load_model_and_processor", must_not_load)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.json").write_text("{}")
    ia3 = rewrite(lora, tmp_path / "ia3", edit_config=lambda c: c | {"peft_type": "IA3"})
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(lora / "adapter_config.json", no_weights)
    cases = {
        str(tmp_path / "typo"): f"No such directory: {tmp_path / 'typo'} (an adapter path; hub ids look like org/name).",
        str(tmp_path / "full"): f"{tmp_path / 'full'} is not a PEFT adapter: it has no adapter_config.json (it looks "
                                "like a full checkpoint: pass it with -c instead).",
        str(ia3): f"{ia3} is a PEFT IA3 adapter, not LoRA; only LoRA adapters are supported.",
        str(no_weights): f"{no_weights} has no adapter weights (adapter_model.safetensors or adapter_model.bin).",
    }
    for adapter, sentence in cases.items():
        with pytest.raises(CheckpointLoadError) as info:
            ModelWorker.from_pretrained(str(tiny_checkpoint), device="cpu", adapter=adapter)
        assert info.value.user_message == sentence
    with pytest.raises(CheckpointLoadError) as info:
        ModelWorker.from_pretrained(str(tiny_checkpoint), device="cpu", adapter=str(lora), merge_adapter=True,
                                    quantization="4bit")
    assert info.value.user_message.startswith("--merge-adapter cannot merge a LoRA adapter into 4-bit weights")
    with pytest.raises(CheckpointLoadError, match="--merge-adapter needs an adapter"):
        ModelWorker.from_pretrained(str(tiny_checkpoint), device="cpu", merge_adapter=True)


def test_a_hub_adapter_that_cannot_be_fetched_is_one_sentence(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointLoadError) as info:
        locate_adapter("nobody-here/no-such-lora")
    assert info.value.user_message == (
        "Cannot load nobody-here/no-such-lora: HF_HUB_OFFLINE is set and no copy is in the local cache; connect once "
        "to download it, or pass a local adapter directory with --adapter.")


def test_an_adapter_on_a_4bit_model_runs_unmerged_like_peft(tiny_checkpoint, lora, audio_dir):
    worker = ModelWorker.from_pretrained(str(tiny_checkpoint), device="cpu", dtype="float32", quantization="4bit",
                                         adapter=str(lora))
    try:
        assert "+ LoRA my-adapter on CPU in 4bit" in worker.info.label
        reference = peft_reference(base_model(tiny_checkpoint, "4bit"), lora)
        assert torch.equal(logits(worker.model, worker, audio_dir), logits(reference, worker, audio_dir))
        assert worker.generate(messages(audio_dir), GREEDY)
    finally:
        worker.shutdown()


def test_merging_into_8bit_weights_is_allowed_with_one_warning(tiny_checkpoint, lora, caplog):
    with caplog.at_level(logging.WARNING, logger="model.adapters"), warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        model = load_model_and_processor(tiny_checkpoint, Placement("cpu", "float32", {"": "cpu"}, "8bit"),
                                         adapter=str(lora), merge_adapter=True)[0]
    assert model.loaded_adapter.merged
    assert caplog.text.count("into 8bit weights rounds its update") == 1
    assert not [w for w in raised if "Merge lora module" in str(w.message)], "peft's per-layer warning stays quiet"


def test_the_command_line_passes_the_adapter_to_the_worker(tiny_checkpoint, lora):
    import web_demo_audio
    from app.config import load_config

    config = load_config(["-c", str(tiny_checkpoint), "--cpu-only", "--adapter", str(lora), "--merge-adapter"], environ={})
    worker = web_demo_audio.load_backend(config)
    try:
        assert worker.info.adapter == "my-adapter" and worker.info.adapter_merged
        assert "+ LoRA my-adapter (merged)" in worker.info.label
    finally:
        worker.shutdown()


def test_an_adapter_that_does_not_fit_stops_the_demo_in_one_line(tiny_checkpoint, lora_4x, tmp_path):
    adapter = rewrite(lora_4x, tmp_path / "partial",
                      edit_tensors=lambda t: {k: v for k, v in t.items() if ".audio_tower." not in k})
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, str(root / "web_demo_audio.py"), "-c", str(tiny_checkpoint), "--cpu-only",
                             "--adapter", str(adapter)], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip() and "Loading weights" not in line]
    errors = [line for line in lines if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr, lines
    assert f"The adapter {adapter} does not fit {tiny_checkpoint}: 4 LoRA weights the model expects are not in it" in errors[0]


def test_importing_peft_keeps_bitsandbytes_noise_off_the_console():
    """bitsandbytes (imported by peft) warns that the optional ``kernels`` package, which would fetch a faster
    4-bit CPU kernel from the hub, is missing; it then uses the kernel it ships, so that line is noise."""
    code = "from model.adapters import import_peft; import_peft(); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "ok" and "kernels-community" not in out.stderr, out.stderr


# ----------------------------------------------------------------------------- Qwen-Audio (first generation)
def test_the_first_generation_family_takes_adapters_too(tiny_qwen_audio_checkpoint, qwen_audio_worker, tmp_path, audio_dir):
    checkpoint = tiny_qwen_audio_checkpoint
    model = base_model(checkpoint)
    targets = [name for name, _ in model.named_modules()
               if name.endswith(".attn.c_attn") or (name.startswith("transformer.audio.blocks.") and name.endswith(".attn.query"))]
    assert any(t.startswith("transformer.audio.") for t in targets)
    adapter = make_lora(model, targets, tmp_path / "qwen-audio-lora")
    unmerged = ModelWorker.from_pretrained(str(checkpoint), device="cpu", dtype="float32", adapter=str(adapter))
    merged = ModelWorker.from_pretrained(str(checkpoint), device="cpu", dtype="float32", adapter=str(adapter),
                                         merge_adapter=True)
    try:
        ours = logits(unmerged.model, unmerged, audio_dir)
        assert torch.equal(ours, logits(peft_reference(base_model(checkpoint), adapter), unmerged, audio_dir))
        assert (ours - logits(qwen_audio_worker.model, qwen_audio_worker, audio_dir)).abs().max() > 0.1
        torch.testing.assert_close(logits(merged.model, merged, audio_dir), ours, atol=1e-5, rtol=1e-5)
        with unmerged.stream(messages(audio_dir), GREEDY) as a, merged.stream(messages(audio_dir), GREEDY) as b:
            assert "".join(a) == "".join(b) and a.token_ids == b.token_ids
        assert "(Qwen-Audio chat) + LoRA qwen-audio-lora (merged)" in merged.info.label
    finally:
        unmerged.shutdown()
        merged.shutdown()


# ----------------------------------------------------------------------------- fine-tuned full checkpoints
MARKER = "You are FINE-TUNED-7, an audio assistant."
#: A generation_config unlike the published one (sampling at 0.7 / 0.5 / 20 / 1.1); test_chat_service.py
#: shows that the page, /chat and /v1 use a checkpoint's generation_config, this file that the worker reads it.
FINE_TUNED_GENERATION = {"do_sample": False, "max_new_tokens": 7, "top_k": 13, "top_p": 0.77, "repetition_penalty": 1.05}


def fine_tune(source: Path, out: Path, template_files: tuple[str, ...], drop: tuple[str, ...] = ()) -> Path:
    """A copy of ``source`` as a fine-tune saves it: its own generation_config and, in ``template_files``,
    a chat template whose default system prompt is MARKER."""
    shutil.copytree(source, out)
    for name in drop:
        (out / name).unlink()
    file = out / "generation_config.json"
    file.write_text(json.dumps(json.loads(file.read_text()) | FINE_TUNED_GENERATION))
    for name in template_files:
        file = out / name
        if name.endswith(".jinja"):
            file.write_text(file.read_text().replace("You are a helpful assistant.", MARKER))
        else:
            data = json.loads(file.read_text())
            assert "You are a helpful assistant." in data["chat_template"]
            data["chat_template"] = data["chat_template"].replace("You are a helpful assistant.", MARKER)
            file.write_text(json.dumps(data))
    return out


@pytest.mark.parametrize("layout", ["current", "hub", "tokenizer-only"])
def test_a_fine_tuned_checkpoint_uses_its_own_template_and_generation_config(layout, tiny_checkpoint, tiny_hub_checkpoint,
                                                                             make_worker, tmp_path, audio_dir):
    """``current``: chat_template.jinja (save_pretrained in transformers 5); ``hub``: chat_template.json and
    tokenizer_config.json (the published layout); ``tokenizer-only``: only tokenizer_config.json carries it,
    which AutoProcessor alone would ignore for Qwen2AudioProcessor's built-in template."""
    if layout == "current":
        checkpoint = fine_tune(tiny_checkpoint, tmp_path / "ft", ("chat_template.jinja",))
    elif layout == "hub":
        checkpoint = fine_tune(tiny_hub_checkpoint, tmp_path / "ft", ("chat_template.json", "tokenizer_config.json"))
    else:
        checkpoint = fine_tune(tiny_hub_checkpoint, tmp_path / "ft", ("tokenizer_config.json",), drop=("chat_template.json",))
    worker = make_worker(checkpoint=checkpoint)
    prompt = worker.prepare(messages(audio_dir)).text
    assert MARKER in prompt and "helpful assistant" not in prompt
    assert worker.info.generation_defaults == GenerationParams(max_new_tokens=7, temperature=0.0, top_k=13, top_p=0.77,
                                                               repetition_penalty=1.05)
    with worker.stream(messages(audio_dir)) as reply:  # no settings: the checkpoint's
        "".join(reply)
    assert 0 < reply.completion_tokens <= 7


def test_a_fine_tuned_first_generation_checkpoint_uses_its_generation_config(tiny_qwen_audio_checkpoint, make_worker,
                                                                              tmp_path, audio_dir):
    checkpoint = fine_tune(tiny_qwen_audio_checkpoint, tmp_path / "ft", ())
    worker = make_worker(checkpoint=checkpoint)
    assert worker.info.generation_defaults == GenerationParams(max_new_tokens=7, temperature=0.0, top_k=13, top_p=0.77,
                                                               repetition_penalty=1.05)
    with worker.stream(messages(audio_dir)) as reply:
        "".join(reply)
    assert 0 < reply.completion_tokens <= 7
