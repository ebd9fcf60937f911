"""The Qwen-Audio reference fixture (tests/fixtures/qwen_audio_reference): cases, checkpoints, audio.

Produced by the original remote code under transformers 4.32 (see the fixture's README.md); the
expected values are read as they are, never edited.
"""

from __future__ import annotations

import json
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "qwen_audio_reference"
CHECKPOINTS = ("tiny-chat", "tiny-base", "tiny-chat-seq32")


@lru_cache(maxsize=1)
def reference() -> dict[str, Any]:
    return json.loads((FIXTURE / "cases.json").read_text(encoding="utf-8"))


def cases(kind: str | None = None) -> list[dict[str, Any]]:
    """The reference cases, optionally only those of ``kind`` ("chat" or "base")."""
    return [c for c in reference()["cases"] if kind is None or c["kind"] == kind]


def case(name: str) -> dict[str, Any]:
    return next(c for c in reference()["cases"] if c["name"] == name)


@lru_cache(maxsize=1)
def tokenizer_cases() -> list[dict[str, Any]]:
    return json.loads((FIXTURE / "tokenizer_cases.json").read_text(encoding="utf-8"))["cases"]


def full_size_keys() -> dict[str, Any]:
    return json.loads((FIXTURE / "full_size_keys.json").read_text(encoding="utf-8"))


def audio(relative: str) -> Path:
    """A fixture audio file by the path the cases use (``audio/speech_short.wav``)."""
    return FIXTURE / relative


def checkpoint(name: str, workdir: Path) -> Path:
    """The directory of fixture checkpoint ``name``; tiny-chat-seq32 is assembled under ``workdir``
    from tiny-chat's files and its own config.json (the fixture keeps only what differs)."""
    if name != "tiny-chat-seq32":
        return FIXTURE / name
    target = Path(workdir) / name
    if not (target / "config.json").is_file():
        target.mkdir(parents=True, exist_ok=True)
        for file in (FIXTURE / "tiny-chat").iterdir():
            shutil.copyfile(file, target / file.name)
        shutil.copyfile(FIXTURE / name / "config.json", target / "config.json")
    return target


def _items(query: Any) -> Any:
    if isinstance(query, str):
        return query
    return [{"type": "audio", "audio": str(audio(item["audio"]))} if "audio" in item else {"type": "text", "text": item["text"]}
            for item in query]


def messages_of(c: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's conversation in the demo's message format (the original's ``history``/``query`` pairs,
    list-format items as audio/text items; a base case as its audio and the task its tags ask for)."""
    from model import BaseTask

    if c["kind"] == "base":
        prompt = c["prompt"]
        assert prompt.endswith("<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>") or \
            prompt.endswith("<|startoftranscript|><|en|><|transcribe|><|en|><|timestamps|><|wo_itn|>"), prompt
        task = BaseTask("transcribe", "en", timestamps="<|timestamps|>" in prompt)
        return [{"role": "user", "content": [{"type": "audio", "audio": str(audio(c["audio_spans"][0]["url"]))},
                                             task.as_item()]}]
    conversation = c["conversation"]
    messages: list[dict[str, Any]] = [{"role": "system", "content": conversation["system"]}]
    history = conversation["history_list_format"] or [(q, r) for q, r in conversation["history"]]
    for query, response in history:
        messages += [{"role": "user", "content": _items(query)}, {"role": "assistant", "content": response}]
    messages.append({"role": "user", "content": _items(conversation["query_list_format"] or conversation["query"])})
    return messages


def expected(c: dict[str, Any]) -> dict[str, Any]:
    """What the case expects of a safe implementation: its own values, or, for the injection cases whose
    original raised or opened a file, ``expected_safe_behaviour``."""
    return c["expected_safe_behaviour"] if "expected_safe_behaviour" in c else {**c, **c["generation"]}


def expected_reply_ids(c: dict[str, Any]) -> list[int]:
    """The greedy ids a native run produces: the original's, without the ``<|endoftext|>`` it forces after
    a stop word (a native run ends at the stop word itself)."""
    e = expected(c)
    ids = list(e["generated_ids"])
    if c["kind"] == "chat" and len(ids) > len(e["reply_ids"]) + 1:
        ids = ids[: len(e["reply_ids"]) + 1]
    return ids
