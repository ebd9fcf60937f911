"""The Space front matter, requirements, pyproject.toml, the Makefile and the Dockerfile agree with each
other and with the versions this test suite runs on (no Docker engine runs here, so the Dockerfile's
invariants are checked as text)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with the Space's YAML front matter"
    return yaml.safe_load(match.group(1))


def requirements(name: str) -> dict[str, Requirement]:
    reqs = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            reqs[req.name.lower()] = req
    return reqs


def installed(name: str) -> Version:
    from importlib.metadata import version

    return Version(version(name))


def lower_bound(req: Requirement) -> Version:
    bounds = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    assert bounds, f"{req} needs a lower bound"
    return max(bounds)


def test_space_front_matter_matches_the_tested_stack():
    meta = front_matter()
    import gradio

    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == gradio.__version__, "sdk_version must be the gradio version the tests ran with"
    assert meta["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (ROOT / meta["app_file"]).is_file()
    assert meta["app_file"] == "web_demo_audio.py"
    assert "Qwen/Qwen2-Audio-7B-Instruct" in meta["models"]
    assert meta["suggested_hardware"] in {"a10g-large", "a10g-largex2", "l4x1", "l40sx1", "a100-large", "h100"}, "needs >= 24 GB of GPU memory"
    assert 0 < len(meta["short_description"]) <= 60


def test_no_system_package_is_needed_to_run_the_demo():
    # Audio is decoded in-process (PyAV): the Space needs no packages.txt, the image no apt-get ffmpeg.
    assert not (ROOT / "packages.txt").exists()
    assert "apt-get" not in (ROOT / "Dockerfile").read_text()
    assert "av" in requirements("requirements.txt")
    makefile = (ROOT / "Makefile").read_text()
    run_recipe = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "apt-get" not in run_recipe and "ffmpeg" not in makefile.replace("no system ffmpeg", "")


def test_the_readme_shows_the_two_commands_first_and_ci_runs_them():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#", 1)[0].strip() for line in first_block.splitlines() if line.split("#", 1)[0].strip()]
    assert commands == ["make run", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M) and 'make run ARGS="--server-port' in ci
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\n\t\$\(BIN\)/python -m pytest", makefile, re.M)
    assert re.search(r"^run: .*\n\t\$\(BIN\)/python web_demo_audio.py", makefile, re.M)


#: The module each requirement is imported as; accelerate is used through transformers (device_map="auto").
MODULES = {"ffmpeg-python": "ffmpeg", "pyyaml": "yaml", "accelerate": None, "silero-vad": "silero_vad"}


def test_every_requirement_is_used():
    sources = "\n".join(p.read_text() for folder in ("app", "model", "bench") for p in (ROOT / folder).rglob("*.py"))
    sources += (ROOT / "web_demo_audio.py").read_text()
    for name in requirements("requirements.txt"):
        module = MODULES.get(name, name)
        if module is None:
            assert 'device_map = "auto"' in sources, "accelerate is required for device_map='auto', which nothing sets"
            continue
        assert re.search(rf"^\s*(import|from) {module}\b", sources, re.M), f"{name} is required but nothing imports it"


def test_requirements_have_tested_lower_bounds_and_no_upper_pins():
    reqs = requirements("requirements.txt")
    # The design's packages, less pydub: nothing needs it (decoding is ffmpeg's, clips are written with wave).
    for name in ("gradio", "torch", "transformers", "librosa", "ffmpeg-python", "accelerate"):
        assert name in reqs, f"{name} is one of the design's packages"
        req = reqs[name]
        assert not any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), f"{req} pins too tightly"
        assert installed(name) >= lower_bound(req), f"the tests ran with {name} {installed(name)}, below {req}"
        assert req.specifier.contains(installed(name), prereleases=True), f"{name} {installed(name)} is excluded by {req}"
    transformers = reqs["transformers"]
    for broken in ("5.10.0", "5.10.1", "5.10.2", "5.10.3"):
        assert not transformers.specifier.contains(broken), f"transformers {broken} ties this model's embeddings wrongly"
    assert lower_bound(reqs["gradio"]) <= Version(front_matter()["sdk_version"])
    test_reqs = {Requirement(r).name.lower(): Requirement(r) for r in pyproject()["project"]["optional-dependencies"]["test"]}
    assert {"pytest", "playwright", "imageio-ffmpeg"} <= set(test_reqs)
    assert not set(test_reqs) & set(reqs), "test-only packages stay out of requirements.txt"
    for name, req in test_reqs.items():
        assert req.specifier.contains(installed(name), prereleases=True), f"{name} {installed(name)} is excluded by {req}"


def pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_reads_requirements_txt_and_names_the_entry_point():
    meta = pyproject()
    assert meta["project"]["dynamic"] == ["dependencies"]
    assert meta["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    assert meta["project"]["scripts"]["qwen-audio-demo"] == "web_demo_audio:cli"
    assert meta["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert not (ROOT / "pytest.ini").exists() and not (ROOT / "requirements-test.txt").exists()


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            rows.append((keyword.upper(), rest.strip()))
    return rows


def test_dockerfile_invariants():
    rows = dockerfile_instructions()
    get = lambda key: [rest for k, rest in rows if k == key]  # noqa: E731
    base = get("FROM")
    assert len(base) == 1 and re.match(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda", base[0]), "a GPU-capable PyTorch base"
    base_torch = Version(re.match(r"pytorch/pytorch:(\d+\.\d+\.\d+)", base[0]).group(1))
    assert requirements("requirements.txt")["torch"].specifier.contains(base_torch), "the base image's torch must satisfy requirements.txt"
    runs = " ".join(get("RUN"))
    assert "useradd" in runs and "--uid 1000" in runs
    user = get("USER")
    assert user and user[-1] in ("user", "1000"), "the app must not run as root"
    assert rows.index(("USER", user[-1])) < [i for i, (k, _) in enumerate(rows) if k == "CMD"][0]
    env = " ".join(get("ENV"))
    assert "GRADIO_SERVER_NAME=0.0.0.0" in env and "HF_HOME=" in env
    hf_home = re.search(r"HF_HOME=(\S+)", env).group(1)
    assert any(hf_home in v for v in get("VOLUME")), "the Hugging Face cache lives on a volume"
    assert get("EXPOSE") == ["7860"]
    cmd = json.loads(get("CMD")[-1])
    assert cmd == ["python", front_matter()["app_file"]], "exec-form CMD running the app file"
    assert "pip install -r requirements.txt" in runs
    assert not re.search(r"snapshot_download|hf download|huggingface-cli download|\.safetensors", runs), "weights are not baked in"


def test_dockerignore_keeps_weights_and_junk_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".git", "**/__pycache__", "checkpoints", "artifacts", "*.safetensors"):
        assert pattern in ignored


@pytest.mark.parametrize("path", ["README.md", "Dockerfile", "requirements.txt", "pyproject.toml", "Makefile", ".ci/run"])
def test_shipping_files_exist(path):
    assert (ROOT / path).is_file()


def test_readme_documents_every_option_and_preset():
    import dataclasses

    from app.config import DemoConfig

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [f.name for f in dataclasses.fields(DemoConfig) if f"`{f.name}`" not in text]
    assert not missing, f"README's options table lacks: {missing}"
    for preset in (ROOT / "configs").glob("*.yaml"):
        assert f"configs/{preset.name}" in text
