"""The speed-up options keep greedy output identical to transformers' default path.

Each option (attention kernel, static KV cache, static cache with ``torch.compile``) is applied to a
worker of its own on the tiny checkpoint; its replies to a two-turn conversation with audio are
compared with transformers' own ``generate`` on the processor's inputs (the reference of
``test_worker_parity.py``). What each option gains is measured by ``bench/latency.py``, not here.
"""

from __future__ import annotations

import pytest

from audio_samples import read_wav16k
from model import Speedups
from test_worker_parity import GREEDY, audio_item, reference_reply, text_item

CASES = {
    "eager attention": Speedups(attention="eager"),
    "sdpa attention": Speedups(attention="sdpa"),
    "static kv cache": Speedups(kv_cache="static"),
    "static kv cache, compiled": Speedups(kv_cache="static-compile"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_greedy_replies_equal_the_reference_with_each_speedup(name, make_worker, worker, audio_dir):
    speedups = CASES[name]
    fast = make_worker(attention=speedups.attention, speedups=speedups)
    if speedups.attention != "auto":
        assert fast.model.config._attn_implementation == speedups.attention
    assert fast.prefix_cache.enabled == (speedups.kv_cache == "dynamic")

    a, c = audio_dir / "tone_a.wav", audio_dir / "tone_c.wav"
    first = [{"role": "user", "content": [audio_item(a), text_item("What sound is this?")]}]
    reply = reference_reply(worker, first, [read_wav16k(a)])
    assert "".join(fast.stream(first, GREEDY)) == reply
    second = first + [{"role": "assistant", "content": reply},
                      {"role": "user", "content": [audio_item(c), text_item("And this one?")]}]
    assert "".join(fast.stream(second, GREEDY)) == reference_reply(worker, second, [read_wav16k(a), read_wav16k(c)])
    if speedups.kv_cache == "static-compile":
        assert hasattr(fast.model, "_compiled_call"), "the decoding step was compiled"


def test_an_unknown_choice_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="kv_cache must be one of dynamic, static, static-compile"):
        Speedups(kv_cache="paged")
    with pytest.raises(ValueError, match="attention must be one of"):
        Speedups(attention="flash")


@pytest.mark.parametrize("name", list(CASES))
def test_qwen_audio_greedy_ids_equal_the_original_with_each_speedup(name, make_worker, tmp_path):
    """On the checkpoint whose short seq_length turns dynamic NTK and logn attention on: the reference ids
    of the original code (the alpha of the prefill is kept through a static cache and compiled steps too)."""
    import qwen_audio_fixture as fx

    speedups = CASES[name]
    fast = make_worker(attention=speedups.attention, speedups=speedups,
                       checkpoint=fx.checkpoint("tiny-chat-seq32", tmp_path))
    for case in (fx.case("seq32_ntk_logn"), fx.case("seq32_history_alpha_change")):
        with fast.stream(fx.messages_of(case), GREEDY.merged(max_new_tokens=24)) as reply:
            "".join(reply)
        assert reply.token_ids == fx.expected_reply_ids(case), case["name"]
