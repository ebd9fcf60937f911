"""The demo's config: defaults <- YAML <- environment <- command line, built once, typed, documented."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from app.config import ConfigError, DemoConfig, build_arg_parser, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_defaults_match_the_original_demo():
    config = load_config([], environ={})
    assert config.checkpoint_path == "Qwen/Qwen2-Audio-7B-Instruct"
    assert (config.device, config.server_name, config.server_port, config.share) == ("auto", "127.0.0.1", 7860, False)
    assert config.max_audio_seconds == 300
    assert config.system_prompt == ""


def test_default_yaml_spells_out_exactly_the_defaults():
    data = yaml.safe_load((CONFIGS / "default.yaml").read_text())
    defaults = {f.name: f.default for f in dataclasses.fields(DemoConfig)}
    assert data == defaults


@pytest.mark.parametrize("name", ["default.yaml", "cpu-tryout.yaml", "gpu.yaml", "qwen-audio-chat.yaml"])
def test_every_shipped_preset_loads(name):
    config = load_config(["--config", str(CONFIGS / name)], environ={})
    assert isinstance(config, DemoConfig)


def test_every_preset_in_the_folder_is_tested():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == ["cpu-tryout.yaml", "default.yaml", "gpu.yaml",
                                                              "qwen-audio-chat.yaml"]


def test_the_qwen_audio_chat_preset_gets_that_checkpoint_s_own_sampling_defaults(qwen_audio_worker):
    import json

    from app.service import ChatService
    from qwen_audio_fixture import FIXTURE

    config = load_config(["--config", str(CONFIGS / "qwen-audio-chat.yaml")], environ={})
    published = json.loads((FIXTURE / "tiny-chat" / "generation_config.json").read_text())  # the hub's values
    assert config.checkpoint_path == "Qwen/Qwen-Audio-Chat"
    # The preset sets no sampling value: the checkpoint's generation_config gives them (temperature and
    # repetition penalty it leaves unset: transformers' 1.0).
    assert (config.temperature, config.top_p, config.top_k, config.repetition_penalty) == (None,) * 4
    defaults = ChatService(qwen_audio_worker, config).defaults
    assert (defaults.max_new_tokens, defaults.temperature, defaults.top_p, defaults.top_k,
            defaults.repetition_penalty) == (published["max_new_tokens"], 1.0, published["top_p"], published["top_k"], 1.0)


def test_cpu_tryout_preset_is_cpu_and_greedy():
    config = load_config(["--config", str(CONFIGS / "cpu-tryout.yaml")], environ={})
    assert (config.device, config.dtype, config.temperature) == ("cpu", "float32", 0.0)


def test_precedence_yaml_then_env_then_cli(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("server_port: 8001\nmax_new_tokens: 100\ntemperature: 0.3\nshare: true\n")
    env = {"QWEN_DEMO_SERVER_PORT": "8002", "QWEN_DEMO_TEMPERATURE": "0.4"}
    config = load_config(["--config", str(file), "--server-port", "8003"], environ=env)
    assert config.server_port == 8003  # CLI beats env beats YAML
    assert config.temperature == 0.4  # env beats YAML
    assert config.max_new_tokens == 100  # YAML beats the default
    assert config.share is True


def test_config_file_from_environment(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("top_k: 7\n")
    assert load_config([], environ={"QWEN_DEMO_CONFIG": str(file)}).top_k == 7


def test_gradio_server_variables_are_respected_and_ours_win():
    assert load_config([], environ={"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "9000"}).server_port == 9000
    env = {"GRADIO_SERVER_PORT": "9000", "QWEN_DEMO_SERVER_PORT": "9001"}
    assert load_config([], environ=env).server_port == 9001
    assert load_config(["--server-port", "9002"], environ=env).server_port == 9002


def test_original_demo_flags():
    config = load_config(["-c", "/ckpt", "--cpu-only", "--share", "--inbrowser", "--server-port", "8000",
                          "--server-name", "0.0.0.0"], environ={})
    assert (config.checkpoint_path, config.device, config.share, config.inbrowser) == ("/ckpt", "cpu", True, True)
    assert (config.server_port, config.server_name) == (8000, "0.0.0.0")


def test_cpu_only_wins_over_a_device_from_anywhere():
    assert load_config(["--cpu-only", "--device", "cuda"], environ={"QWEN_DEMO_DEVICE": "cuda"}).device == "cpu"


def test_boolean_flags_can_be_turned_off():
    assert load_config(["--no-examples"], environ={"QWEN_DEMO_EXAMPLES": "1"}).examples is False
    assert load_config([], environ={"QWEN_DEMO_EXAMPLES": "no"}).examples is False


def test_every_field_has_a_flag_with_its_default_in_help():
    text = build_arg_parser().format_help()
    for f in dataclasses.fields(DemoConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name
    for flag in ("-c", "--checkpoint-path", "--cpu-only", "--share", "--inbrowser", "--server-port", "--server-name",
                 "--config"):
        assert flag in text
    assert text.count("(default:") >= len(dataclasses.fields(DemoConfig)) + 2
    assert "(default: Qwen/Qwen2-Audio-7B-Instruct)" in " ".join(text.split())


@pytest.mark.parametrize(
    "argv, env, fragment",
    [
        ([], {"QWEN_DEMO_SERVER_PORT": "http"}, "server_port from $QWEN_DEMO_SERVER_PORT must be int"),
        ([], {"QWEN_DEMO_SHARE": "maybe"}, "share"),
        (["--temperature", "-1"], {}, "temperature must be a number in [0, 2] (0 = greedy), not -1.0."),
        (["--max-new-tokens", "5000"], {}, "max_new_tokens"),
        ([], {"QWEN_DEMO_DEVICE": "tpu"}, "device must be one of auto, cuda, mps, cpu"),
    ],
)
def test_bad_values_are_one_sentence_naming_the_field(argv, env, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(argv, environ=env)


def test_bad_yaml_files(tmp_path):
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("server_prot: 1\n")
    with pytest.raises(ConfigError, match="unknown field.*server_prot"):
        load_config(["--config", str(unknown)], environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(["--config", str(tmp_path / "missing.yaml")], environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(["--config", str(broken)], environ={})


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_config([], environ={}).server_port = 1  # type: ignore[misc]
