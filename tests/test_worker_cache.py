"""Multi-turn reuse: decoded audio, audio features and prompt KV caches are reused by content, and the
replies stay token for token what the uncached transformers path gives."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from audio_samples import read_wav16k, tone, write_wav
from model import CacheSizes, GenerationParams
from model.caches import LruCache
from model.inputs import InputEncoder
from test_worker_parity import GROUP

GREEDY = GenerationParams(temperature=0, max_new_tokens=24)


def reference(worker, messages, arrays):
    """transformers' own uncached path on the whole conversation."""
    processor = worker.processor
    template = [
        {"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else [
            {"type": "audio", "audio": "a"} if i.get("type") == "audio" else i for i in m["content"]]}
        for m in messages
    ]
    text = processor.apply_chat_template(template, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], audio=arrays or None, sampling_rate=16000, return_tensors="pt", padding=True)
    out = worker.model.generate(**inputs, do_sample=False, max_new_tokens=GREEDY.max_new_tokens)
    return processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.fixture()
def fresh_worker(make_worker):
    return make_worker()


@pytest.fixture(scope="module")
def turn_audio(tmp_path_factory):
    d = tmp_path_factory.mktemp("turns")
    return [write_wav(d / f"turn{i}.wav", tone(6.0 + i, 250.0 + 70 * i, seed=40 + i)) for i in range(5)]


def test_five_turns_reuse_the_prefix_and_equal_the_uncached_reference(fresh_worker, turn_audio):
    messages, arrays = [], []
    for turn, path in enumerate(turn_audio):
        messages.append({"role": "user", "content": [{"type": "audio", "audio": str(path)}, {"type": "text", "text": f"Turn {turn}: what now?"}]})
        arrays.append(read_wav16k(path))
        reply = fresh_worker.stream(messages, GREEDY)
        text = "".join(reply)
        assert text == reference(fresh_worker, messages, arrays), f"turn {turn + 1} differs from the uncached path"
        if turn == 0:
            assert reply.reused_tokens == 0
        else:
            # Everything up to the previous prompt's end (at least) came from the cache.
            assert reply.reused_tokens >= previous_prompt, (turn, reply.reused_tokens, previous_prompt)
        previous_prompt = reply.prompt_tokens
        messages.append({"role": "assistant", "content": text})
    assert fresh_worker.prefix_cache.stats.hits == 4


def test_same_tokens_different_audio_is_not_reused(fresh_worker, turn_audio, tmp_path):
    first = [{"role": "user", "content": [{"type": "audio", "audio": str(turn_audio[0])}, {"type": "text", "text": "Hi"}]}]
    fresh_worker.generate(first, GREEDY)
    # Same length, same text, different sound: identical token ids, different audio.
    other = write_wav(tmp_path / "other.wav", tone(6.0, 900.0, seed=99))
    second = [{"role": "user", "content": [{"type": "audio", "audio": str(other)}, {"type": "text", "text": "Hi"}]}]
    assert fresh_worker.prepare(second).text == fresh_worker.prepare(first).text
    reply = fresh_worker.stream(second, GREEDY)
    text = "".join(reply)
    ids = fresh_worker.processor(text=[fresh_worker.prepare(second).text], audio=[read_wav16k(other)], sampling_rate=16000)["input_ids"][0]
    first_audio_token = list(ids).index(fresh_worker.processor.audio_token_id)
    assert 0 < reply.reused_tokens == first_audio_token  # only the text before the (different) audio
    assert text == reference(fresh_worker, second, [read_wav16k(other)])


def test_regenerate_reuses_the_whole_prompt_and_gives_the_same_reply(fresh_worker, turn_audio):
    messages = [{"role": "user", "content": [{"type": "audio", "audio": str(turn_audio[1])}, {"type": "text", "text": "Again?"}]}]
    first = fresh_worker.stream(messages, GREEDY)
    text = "".join(first)
    again = fresh_worker.stream(messages, GREEDY)
    assert "".join(again) == text
    assert again.reused_tokens == again.prompt_tokens - 1


def test_decoded_audio_is_cached_by_content_not_path(fresh_worker, turn_audio, tmp_path):
    copy = shutil.copy(turn_audio[2], tmp_path / "renamed copy.wav")
    fresh_worker.prepare([{"role": "user", "content": [{"type": "audio", "audio": str(turn_audio[2])}]}])
    misses = fresh_worker.audio_cache.misses
    fresh_worker.prepare([{"role": "user", "content": [{"type": "audio", "audio": str(copy)}]}])
    assert fresh_worker.audio_cache.misses == misses and fresh_worker.audio_cache.hits >= 1
    write_wav(copy, tone(3.0, 123.0))  # edited in place: new content, new key
    prepared = fresh_worker.prepare([{"role": "user", "content": [{"type": "audio", "audio": str(copy)}]}])
    assert fresh_worker.audio_cache.misses == misses + 1 and prepared.audios[0].seconds == 3.0


def test_caches_stay_within_their_budgets(make_worker, turn_audio):
    small = make_worker(cache=CacheSizes(audio_mb=1, features_mb=4, prefix_tokens=600))
    for path in turn_audio:
        small.generate([{"role": "user", "content": [{"type": "audio", "audio": str(path)}, {"type": "text", "text": "x"}]}], GREEDY)
        assert small.audio_cache.size <= 1 << 20
        assert small.feature_cache.size <= 4 << 20
        assert small.prefix_cache.stats.size <= 600
    assert 0 < len(small.prefix_cache.stats) < len(turn_audio)  # older prompts were evicted


def test_caches_can_be_turned_off(make_worker, turn_audio):
    off = make_worker(cache=CacheSizes(audio_mb=0, features_mb=0, prefix_tokens=0))
    messages = [{"role": "user", "content": [{"type": "audio", "audio": str(turn_audio[0])}, {"type": "text", "text": "x"}]}]
    a = off.stream(messages, GREEDY)
    text = "".join(a)
    b = off.stream(messages, GREEDY)
    assert "".join(b) == text and b.reused_tokens == 0 and len(off.audio_cache) == 0


@pytest.mark.parametrize("seconds", [[3.0], [30.0, 30.0, 15.0], [0.5, 12.34, 29.99], []])
def test_input_encoder_equals_the_processor(worker, seconds):
    processor = worker.processor
    encoder = InputEncoder(processor, LruCache(1 << 30))
    windows = [tone(s, 300.0 + 50 * i, seed=i) for i, s in enumerate(seconds)]
    text = "<|im_start|>user\n" + "".join(f"Audio {i}: {GROUP}\n" for i in range(len(windows))) + "hi<|im_end|>\n<|im_start|>assistant\n"
    ours = encoder.encode(text, windows)
    theirs = processor(text=[text], audio=windows or None, sampling_rate=16000, return_tensors="pt", padding=True)
    assert torch.equal(ours.input_ids, theirs["input_ids"]) and torch.equal(ours.attention_mask, theirs["attention_mask"])
    if windows:
        audio = ours.audio_inputs()
        assert torch.equal(audio["input_features"], theirs["input_features"])
        assert torch.equal(audio["feature_attention_mask"], theirs["feature_attention_mask"])
        assert ours.audio_inputs(len(windows)) == {}
        assert [s.end - s.start for s in ours.spans] == [int(n) for n in np.asarray(
            [(((m - 1) // 2 + 1) - 2) // 2 + 1 for m in theirs["feature_attention_mask"].sum(-1).tolist()])]
