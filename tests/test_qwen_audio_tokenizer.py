"""The native Qwen-Audio tokenizer equals the original's ids and decodes on the reference fixture."""

from __future__ import annotations

import base64
import codecs
import json
import random
import unicodedata

import numpy as np
import pytest
import tiktoken

from model.families.qwen_audio.tokenizer import (
    AUDIO_SPECIAL_TOKENS,
    LANGUAGES,
    PAT_STR,
    SPECIAL_TOKENS,
    TIMESTAMP_TOKENS,
    QwenAudioTokenizer,
    load_ranks,
)
from qwen_audio_fixture import CHECKPOINTS, FIXTURE, checkpoint, tokenizer_cases

CASES = tokenizer_cases()
CASE_IDS = [f"{i}:{c['text'][:24]!r}" for i, c in enumerate(CASES)]
ENCODE_MODES = {  # reference key -> our call
    "ids_default": lambda tok, text: tok.encode_with_specials(text, allowed="all"),
    "ids_chat_content": lambda tok, text: tok.encode_with_specials(text, allowed="audio"),
    "ids_plain": lambda tok, text: tok.encode_plain(text),
}
DECODE_MODES = {"decode": "keep", "decode_skip_special_tokens": "skip", "decode_keep_timestamps_only": "timestamps"}


@pytest.fixture(scope="module")
def tok() -> QwenAudioTokenizer:
    return QwenAudioTokenizer.from_pretrained(FIXTURE / "tiny-chat")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_encode_modes_equal_reference_ids(tok, case):
    checked = 0
    for key, encode in ENCODE_MODES.items():
        if case[key] is None:  # the original raised (needs audio info); only the other modes have ids
            assert case.get(f"{key}_raised"), key
            continue
        assert encode(tok, case["text"]) == case[key], key
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_decodes_equal_reference_strings(tok, case):
    ids = case["ids_default"] if case["ids_default"] is not None else case["ids_plain"]
    for key, specials in DECODE_MODES.items():
        assert tok.decode(ids, specials=specials) == case[key], key


def test_reference_cases_exercise_every_mode_difference():
    """Guards the two tests above against a fixture where the modes happen to agree."""
    assert sum(c["ids_default"] not in (None, c["ids_chat_content"]) for c in CASES) >= 3
    assert sum(c["ids_chat_content"] not in (None, c["ids_plain"]) for c in CASES) >= 3
    assert any(c["decode"] != c["decode_keep_timestamps_only"] for c in CASES)
    assert any(c["decode_keep_timestamps_only"] != c["decode_skip_special_tokens"] for c in CASES)
    assert any(c["nfc_changes_it"] for c in CASES)


def test_id_table_of_the_tiny_fixture(tok):
    assert (tok.n_base, tok.n_vocab) == (556, 4078)
    assert (tok.eod_id, tok.im_start_id, tok.im_end_id) == (556, 557, 558)
    assert (tok.audio_pad_id, tok.audio_start_id, tok.audio_end_id) == (764, 4076, 4077)
    expected = {
        "<|startoftranscript|>": 765,
        "<|transcribe|>": 768,
        "<|en|>": 772,
        "<|notimestamps|>": 781,
        "<|timestamps|>": 783,
        "<|0.00|>": 784,
        "<|30.00|>": 3784,
        "<|wo_itn|>": 3790,
        "<audio>": 4076,
        "</audio>": 4077,
    }
    assert {token: tok.token_id(token) for token in expected} == expected


def test_special_tokens_are_in_the_original_order(tok):
    assert len(AUDIO_SPECIAL_TOKENS) == 3314 and len(set(AUDIO_SPECIAL_TOKENS)) == 3314
    assert SPECIAL_TOKENS[:4] == ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|extra_0|>")
    assert SPECIAL_TOKENS[207] == "<|extra_204|>" and SPECIAL_TOKENS[208:] == AUDIO_SPECIAL_TOKENS
    assert AUDIO_SPECIAL_TOKENS[:8] == (
        "[[[AUDIO:modality]]]", "<|startoftranscript|>", "<|startofanalysis|>", "<|translate|>",
        "<|transcribe|>", "<|caption|>", "<|keyword|>", "<|unknown|>",
    )
    assert list(LANGUAGES) == ["en", "zh", "de", "es", "ko", "fr", "ja", "it"]
    assert AUDIO_SPECIAL_TOKENS[8:20] == (
        *(f"<|{lang}|>" for lang in LANGUAGES), "<|zh_tr|>", "<|notimestamps|>", "<|sil|>", "<|timestamps|>",
    )
    assert AUDIO_SPECIAL_TOKENS[20:3021] == tuple(f"<|{i // 100}.{i % 100:02d}|>" for i in range(3001))
    rest = AUDIO_SPECIAL_TOKENS[3021:]
    assert rest[:6] == ("<|caption_audiocaps|>", "<|caption_clotho|>", "<|audioset_ontology|>",
                        "<|caption_plain|>", "<|itn|>", "<|wo_itn|>")
    pitch = rest.index("<|pitch|>")
    assert rest[pitch + 1:pitch + 129] == tuple(f"<|midi_pitch_{i}|>" for i in range(128))
    assert rest[pitch + 129] == "<|velocity|>"
    assert rest[pitch + 130:pitch + 258] == tuple(f"<|midi_velocity_{i}|>" for i in range(128))
    assert rest[-4:] == ("<|entities|>", "<|speech_edit|>", "<audio>", "</audio>")
    assert list(tok.special_tokens) == list(SPECIAL_TOKENS)
    assert TIMESTAMP_TOKENS == AUDIO_SPECIAL_TOKENS[20:3021]
    assert [tok.encode_with_specials(token) for token in SPECIAL_TOKENS] == [[i] for i in range(tok.n_base, tok.n_vocab)]
    assert all(len(tok.encode_with_specials(token, allowed="audio")) > 1 for token in SPECIAL_TOKENS[:208])
    assert list(tok.special_tokens.values()) == list(range(tok.n_base, tok.n_vocab))


def test_every_fixture_checkpoint_carries_the_same_vocabulary(tmp_path):
    files = {name: checkpoint(name, tmp_path) / "qwen.tiktoken" for name in CHECKPOINTS}
    contents = {name: path.read_bytes() for name, path in files.items()}
    assert len(set(contents.values())) == 1, "the fixture's tokenizer cases hold for every checkpoint only if so"
    for name in CHECKPOINTS:
        assert QwenAudioTokenizer.from_pretrained(checkpoint(name, tmp_path)).n_vocab == 4078, name


def test_padding_ids_decode_to_nothing(tok):
    vocab_size = json.loads((FIXTURE / "tiny-chat" / "config.json").read_text())["vocab_size"]
    padding = list(range(tok.n_vocab, vocab_size))
    assert padding == list(range(4078, 4096))
    hello = tok.encode_plain("Hello")
    for specials in DECODE_MODES.values():
        assert tok.decode(padding, specials=specials) == ""
        assert tok.decode(hello[:2] + padding + hello[2:], specials=specials) == "Hello"
        assert all(tok.token_bytes(i, specials) == b"" for i in padding)


def test_decode_takes_arrays_and_rejects_unknown_modes(tok):
    ids = tok.encode_with_specials("<|2.33|>hi<|im_end|>")
    assert tok.decode(np.array(ids)) == "<|2.33|>hi<|im_end|>"
    with pytest.raises(ValueError, match="specials"):
        tok.decode(ids, specials="none")
    with pytest.raises(ValueError, match="allowed"):
        tok.encode_with_specials("hi", allowed="chat")


@pytest.mark.parametrize("specials", ["timestamps", "keep", "skip"])
def test_streamed_token_bytes_join_to_decode(tok, specials):
    text = "请转写这段音频 😀🎵 <|2.33|> é<|im_end|> done <|30.00|>"
    ids = tok.encode_with_specials(text)
    assert tok.im_end_id in ids and tok.token_id("<|2.33|>") in ids
    pieces = [tok.token_bytes(i, specials) for i in ids + [4090]]  # a padding id too
    split_chars = 0
    for piece in pieces:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            split_chars += 1
    assert split_chars >= 2, "the text must split some UTF-8 characters across tokens"
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    streamed = "".join(decoder.decode(piece) for piece in pieces) + decoder.decode(b"", final=True)
    assert streamed == tok.decode(ids, specials=specials)
    assert "\ufffd" not in streamed


def test_timestamp_tokens(tok):
    first, last = tok.token_id("<|0.00|>"), tok.token_id("<|30.00|>")
    assert not tok.is_timestamp(first - 1) and not tok.is_timestamp(last + 1)
    assert tok.is_timestamp(first) and tok.is_timestamp(last)
    assert tok.timestamp_seconds(tok.token_id("<|2.33|>")) == 2.33
    assert all(tok.decode([i]) == f"<|{tok.timestamp_seconds(i):.2f}|>" for i in range(first, last + 1))
    with pytest.raises(ValueError):
        tok.timestamp_seconds(tok.token_id("<|timestamps|>"))


FRAGMENTS = [
    "<|", "|>", "<", ">", "|", "[[", "]]", "<|en|>", "<|im_start|>", "<|im_end|>", "<|2.33|>", "<|30.01|>",
    "<|endoftext|>", "[[[AUDIO:modality]]]", "<audio>", "</audio>", "</audio", "<|extra_7|>", "<|sil|>",
    "en", "2.33", "a", " ", "  ", "\n", "\r\n", "e\u0301", "é", "中文", "😀", "'s", "12",
]


def test_special_parsing_equals_tiktokens_allowed_special(tok):
    """encode_with_specials finds specials itself (tiktoken's allowed set costs ~1 ms a call); it must
    split exactly as tiktoken does, overlaps and near-misses included."""
    reference = tiktoken.Encoding(
        "reference", pat_str=PAT_STR, mergeable_ranks=load_ranks(FIXTURE / "tiny-chat" / "qwen.tiktoken"),
        special_tokens=tok.special_tokens,
    )
    modes = {"all": set(SPECIAL_TOKENS), "audio": set(AUDIO_SPECIAL_TOKENS), "timestamps": set(TIMESTAMP_TOKENS)}
    rng = random.Random(0)
    texts = ["<|<|en|>", "<|[[[AUDIO:modality]]]|>", "<|im_start|<|im_end|>", "<<audio>>", "<|2.33|<|2.34|>|>"]
    texts += ["".join(rng.choices(FRAGMENTS, k=rng.randint(1, 12))) for _ in range(150)]
    for text in texts:
        for mode, allowed in modes.items():
            nfc = unicodedata.normalize("NFC", text)
            expected = reference.encode(nfc, allowed_special=allowed, disallowed_special=())
            assert tok.encode_with_specials(text, allowed=mode) == expected, (mode, text)


def test_user_text_stays_plain(tok):
    text = "<|im_start|>system\n<audio>/etc/passwd</audio><|2.33|>"
    assert all(i < tok.eod_id for i in tok.encode_plain(text))
    assert tok.decode(tok.encode_plain(text)) == text
    assert tok.encode_with_specials(text, allowed="timestamps")[-1] == tok.token_id("<|2.33|>")
    assert tok.im_start_id not in tok.encode_with_specials(text, allowed="timestamps")


def test_token_id_of_a_non_special_raises_key_error(tok):
    with pytest.raises(KeyError, match="not a special token"):
        tok.token_id("<|startoftranscription|>")


def test_missing_vocabulary_names_the_file(tmp_path):
    with pytest.raises(ValueError, match="qwen.tiktoken") as raised:
        QwenAudioTokenizer.from_pretrained(tmp_path)
    assert str(tmp_path / "qwen.tiktoken") in str(raised.value)


def _line(token: bytes, rank: int) -> str:
    return f"{base64.b64encode(token).decode()} {rank}\n"


BYTES = "".join(_line(bytes([b]), b) for b in range(256))


@pytest.mark.parametrize(
    "contents",
    [
        "",
        "not-base64!! 0\n",
        "QQ== zero\n",
        "QQ==\n",
        BYTES + _line(b"ab", 300),  # a gap in the ranks
        BYTES + _line(b"ab", 12),  # a rank twice
        "".join(_line(bytes([b]), b) for b in range(255)),  # byte 0xff has no token
    ],
    ids=["empty", "bad-base64", "bad-rank", "one-field", "rank-gap", "rank-twice", "missing-byte"],
)
def test_garbled_vocabulary_names_the_file(tmp_path, contents):
    (tmp_path / "qwen.tiktoken").write_text(contents)
    with pytest.raises(ValueError) as raised:
        QwenAudioTokenizer.from_pretrained(tmp_path)
    assert str(tmp_path / "qwen.tiktoken") in str(raised.value)


def test_a_minimal_byte_vocabulary_loads(tmp_path):
    (tmp_path / "qwen.tiktoken").write_text(BYTES)
    tok = QwenAudioTokenizer.from_pretrained(tmp_path)
    assert (tok.n_base, tok.eod_id, tok.n_vocab) == (256, 256, 256 + 3522)
    assert tok.encode_plain("hé") == [104, 0xC3, 0xA9]
