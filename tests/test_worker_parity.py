"""Greedy replies from the worker equal transformers' own generate on the same processor inputs."""

from __future__ import annotations

import numpy as np
import pytest

from audio_samples import read_wav16k
from model import GenerationParams

MAX_NEW = 40
GREEDY = GenerationParams(temperature=0, max_new_tokens=MAX_NEW)
GROUP = "<|audio_bos|><|AUDIO|><|audio_eos|>"


def reference_reply(worker, template_messages, audio_arrays, expand=None):
    """transformers' own path: chat template -> processor(audio=...) -> model.generate -> decode.

    ``expand`` maps the k-th audio (0-based) to its number of 30 s windows, for long audio.
    """
    model, processor = worker.model, worker.processor
    text = processor.apply_chat_template(template_messages, tokenize=False, add_generation_prompt=True)
    if expand:
        parts = text.split(GROUP)
        text = parts[0] + "".join(GROUP * expand.get(i, 1) + rest for i, rest in enumerate(parts[1:]))
    inputs = processor(text=[text], audio=audio_arrays or None, sampling_rate=16000, return_tensors="pt", padding=True)
    out = model.generate(**inputs, do_sample=False, max_new_tokens=MAX_NEW)
    return processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def streamed(worker, messages, params=GREEDY):
    pieces = list(worker.stream(messages, params))
    assert all(isinstance(p, str) and p for p in pieces)
    return pieces


def audio_item(path):
    return {"type": "audio", "audio": str(path)}


def text_item(text):
    return {"type": "text", "text": text}


def test_one_audio_and_text(worker, audio_dir):
    a = audio_dir / "tone_a.wav"
    messages = [{"role": "user", "content": [audio_item(a), text_item("What sound is this?")]}]
    pieces = streamed(worker, messages)
    assert len(pieces) > 1
    assert "".join(pieces) == reference_reply(worker, messages, [read_wav16k(a)])


def test_two_audios_in_one_turn(worker, audio_dir):
    a, b = audio_dir / "tone_a.wav", audio_dir / "tone_b.wav"
    messages = [{"role": "user", "content": [audio_item(a), audio_item(b), text_item("Which clip is higher?")]}]
    assert "".join(streamed(worker, messages)) == reference_reply(worker, messages, [read_wav16k(a), read_wav16k(b)])


def test_three_turns_with_audio_in_turns_one_and_three(worker, audio_dir):
    a, c = audio_dir / "tone_a.wav", audio_dir / "tone_c.wav"
    messages = [
        {"role": "system", "content": "You are a careful listener."},
        {"role": "user", "content": [audio_item(a), text_item("Describe this.")]},
        {"role": "assistant", "content": "A steady tone."},
        {"role": "user", "content": "How long is it?"},
        {"role": "assistant", "content": [text_item("About two seconds.")]},
        {"role": "user", "content": [audio_item(c), text_item("And this one, compared with Audio 1?")]},
    ]
    assert "".join(streamed(worker, messages)) == reference_reply(worker, messages, [read_wav16k(a), read_wav16k(c)])


def test_text_only_turn(worker):
    messages = [{"role": "user", "content": "Tell me about the sound of rain."}]
    assert "".join(streamed(worker, messages)) == reference_reply(worker, messages, [])


def test_audio_only_turn_voice_chat(worker, audio_dir):
    b = audio_dir / "tone_b.wav"
    messages = [{"role": "user", "content": [audio_item(b)]}]
    assert "".join(streamed(worker, messages)) == reference_reply(worker, messages, [read_wav16k(b)])


def test_75_second_audio_is_split_into_three_windows(worker, audio_dir):
    long_ = audio_dir / "long_75s.wav"
    messages = [{"role": "user", "content": [audio_item(long_), text_item("Summarise the recording.")]}]
    reply = worker.stream(messages, GREEDY)
    assert [(a.source, a.seconds, a.windows) for a in reply.prepared.audios] == [("long_75s.wav", 75.0, 3)]
    text = "".join(reply)
    samples = read_wav16k(long_)
    windows = [samples[:480000], samples[480000:960000], samples[960000:]]
    assert [len(w) for w in windows] == [480000, 480000, 240000]
    assert text == reference_reply(worker, messages, windows, expand={0: 3})
    # Nothing was cut: 75 s of audio became 75 s worth of audio tokens (25 per second).
    prompt = worker.prepare(messages).text
    assert prompt.count(GROUP) == 3
    assert reply.prompt_tokens - worker.processor(text=[prompt.replace(GROUP, "")], return_tensors="pt")["input_ids"].shape[1] == 3 * 2 + 1875


def test_audio_changes_the_answer(worker, audio_dir):
    """Guards against the `audios=` trap, where the processor silently ignores the audio."""
    replies = {
        "".join(streamed(worker, [{"role": "user", "content": [audio_item(audio_dir / f"client_{i}.wav"), text_item("What is it?")]}]))
        for i in range(4)
    }
    assert len(replies) > 1


def test_base_model_task_prompt_matches_reference(tiny_base_checkpoint, audio_dir):
    from model import ModelWorker, base_task_prompt

    base = ModelWorker.from_pretrained(str(tiny_base_checkpoint), device="cpu")
    assert base.family == "base"
    a = audio_dir / "tone_a.wav"
    prompt = base_task_prompt("transcribe", "en")
    assert prompt == "Detect the language and recognize the speech: <|en|>"
    messages = [{"role": "user", "content": [audio_item(a), text_item(prompt)]}]
    text = "".join(base.stream(messages, GREEDY))
    inputs = base.processor(text=[GROUP + prompt], audio=[read_wav16k(a)], sampling_rate=16000, return_tensors="pt")
    out = base.model.generate(**inputs, do_sample=False, max_new_tokens=MAX_NEW)
    assert text == base.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.mark.parametrize("task,language,expected", [
    ("translate", "zh", "Translate the speech into Chinese:"),
    ("caption", None, "Generate the caption in English:"),
    ("transcribe", None, "Detect the language and recognize the speech:"),
    ("free", None, "Is there a dog?"),
])
def test_base_task_prompts(task, language, expected):
    from model import base_task_prompt

    assert base_task_prompt(task, language, prompt="Is there a dog?") == expected


def test_sampling_with_seed_is_reproducible(worker, audio_dir):
    messages = [{"role": "user", "content": [audio_item(audio_dir / "tone_a.wav"), text_item("Hi")]}]
    params = GenerationParams(temperature=1.0, top_p=0.9, top_k=40, seed=1234, max_new_tokens=24)
    first = worker.generate(messages, params)
    assert worker.generate(messages, params) == first
    others = {worker.generate(messages, params.merged(seed=s)) for s in range(5)}
    assert len(others | {first}) > 1


def test_samples_array_input_equals_file_input(worker, audio_dir):
    a = audio_dir / "tone_c.wav"
    by_file = worker.generate([{"role": "user", "content": [audio_item(a), text_item("x")]}], GREEDY)
    by_array = worker.generate([{"role": "user", "content": [{"type": "audio", "audio": read_wav16k(a)}, text_item("x")]}], GREEDY)
    assert by_file == by_array and np.asarray(read_wav16k(a)).dtype == np.float32
