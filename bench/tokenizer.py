"""Encode and per-token streaming speed of the Qwen-Audio tokenizer: tiktoken against `tokenizers`.

    python -m bench.tokenizer [--vocab FILE] [--ranks 32000] [--corpus-mb 6] [--tokens 6000]
                             [--repeats 30] [--json OUT]

Both sides use one vocabulary: ours is ``model.families.qwen_audio.tokenizer.QwenAudioTokenizer``
(tiktoken, Qwen's pre-tokenizer, NFC first); the other is the same rank file turned into a
``tokenizers.Tokenizer`` by transformers' ``TikTokenConverter`` (what a "fast" tokenizer built from
``qwen.tiktoken`` would be), with an NFC normaliser and the Qwen-Audio special tokens added in id order.
The tiny fixture vocabulary (556 ranks) is too small to say anything about speed, so without
``--vocab`` (e.g. a real checkpoint's ``qwen.tiktoken``) a byte-level BPE of ``--ranks`` ranks is
trained with `tokenizers` on the .py/.md files of this Python's site-packages and written as a
tiktoken rank file in a temp dir.

Timed, median of ``--repeats`` after one warm-up, interleaved: encoding a ChatML prompt of about 6k
tokens (several turns, English, Chinese, code, timestamp tags; every special string parsed); encoding
100 short strings one call each (roles and contents, as a prompt is built message by message); and
streaming 512 ids to text one token at a time, as the worker does: ours ``token_bytes`` through an
incremental UTF-8 decoder, theirs ``tokenizers.decoders.DecodeStream.step``. Loading (the rank file
to a ready tokenizer) is timed once. Both must give the same ids and the same text (checked,
reported; exit 1 if not). A benchmark: it asserts nothing else.
"""

from __future__ import annotations

import argparse
import codecs
import json
import platform
import random
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from model.families.qwen_audio.tokenizer import PAT_STR, SPECIAL_TOKENS, QwenAudioTokenizer

STREAM_TOKENS = 512

TURNS = [
    ("user", "Audio 1:<audio>clip.wav</audio>\nWhat does the speaker say, and when does the music start?"),
    ("assistant", "The speaker says \"let's meet at the station at 9:30\"; the music starts at <|2.33|> and "
                  "fades out at <|14.07|>. The voice is calm, with a slight British accent."),
    ("user", "请把这段音频转写成中文，并告诉我说话人的情绪。"),
    ("assistant", "对了我还想提议我们可以租一些自行车骑行一下，既锻炼身体又心情愉悦。说话人的情绪是愉快的 😀🎵。"),
    ("user", "Write a Python function that returns the loudest 30 ms window of a 16 kHz signal."),
    ("assistant", "def loudest_window(samples, rate=16000, ms=30):\n    size = rate * ms // 1000\n"
                  "    energy = [sum(x * x for x in samples[i:i + size]) for i in range(0, len(samples) - size, size)]\n"
                  "    best = max(range(len(energy)), key=energy.__getitem__)\n    return best * size / rate  # seconds\n"),
]


def chat_prompt(target_tokens: int, tok: QwenAudioTokenizer) -> str:
    """A ChatML prompt of the turns above, repeated until it encodes to about ``target_tokens``."""
    system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    body = "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in TURNS)
    per_round = len(tok.encode_with_specials(body))
    return system + body * max(1, round(target_tokens / per_round)) + "<|im_start|>assistant\n"


def site_packages_text(megabytes: float, seed: int = 0) -> list[str]:
    """About ``megabytes`` of .py/.md text from this Python's site-packages (a fixed random sample)."""
    root = Path(sysconfig.get_paths()["purelib"])
    files = sorted(p for p in root.rglob("*") if p.suffix in (".py", ".md") and p.is_file())
    random.Random(seed).shuffle(files)
    texts, size = [], 0
    for path in files:
        if size >= megabytes * 1e6:
            break
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        texts.append(text)
        size += len(text)
    return texts


def train_rank_file(target: Path, ranks: int, megabytes: float) -> dict[str, float]:
    """Trains a byte-level BPE of ``ranks`` ranks with Qwen's pre-tokenizer and writes it to ``target``
    as tiktoken ranks: the 256 bytes at 0..255, then each merge's result in merge order."""
    import base64

    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    texts = site_packages_text(megabytes)
    started = time.perf_counter()
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PAT_STR), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=ranks, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    train_s = time.perf_counter() - started
    to_byte = {char: byte for byte, char in bytes_to_unicode().items()}
    table = {bytes([b]): b for b in range(256)}
    for merge in json.loads(bpe.to_str())["model"]["merges"]:
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        token = bytes(to_byte[c] for c in left + right)
        table.setdefault(token, len(table))
    target.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in table.items()))
    return {"corpus_mb": sum(map(len, texts)) / 1e6, "train_s": train_s, "ranks": len(table)}


def load_theirs(vocab: Path):
    """The rank file as a ``tokenizers.Tokenizer`` through transformers' TikTokenConverter, with NFC and
    the specials appended in id order (so their ids equal ours)."""
    from tokenizers import normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    converted = TikTokenConverter(vocab_file=str(vocab), pattern=PAT_STR, extra_special_tokens=list(SPECIAL_TOKENS)).converted()
    converted.normalizer = normalizers.NFC()
    return converted


def stream_ours(tok: QwenAudioTokenizer, ids: list[int]) -> str:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces = [decoder.decode(tok.token_bytes(i, "keep")) for i in ids]
    pieces.append(decoder.decode(b"", final=True))
    return "".join(pieces)


def stream_theirs(theirs, ids: list[int]) -> str:
    from tokenizers.decoders import DecodeStream

    stream = DecodeStream(skip_special_tokens=False)
    pieces = [stream.step(theirs, i) for i in ids]
    return "".join(p for p in pieces if p)


def timed_ms(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=Path, help="a qwen.tiktoken to use (default: train one on site-packages)")
    parser.add_argument("--ranks", type=int, default=32000, help="BPE ranks to train without --vocab (default: 32000)")
    parser.add_argument("--corpus-mb", type=float, default=6.0, help="training text in MB without --vocab (default: 6)")
    parser.add_argument("--tokens", type=int, default=6000, help="approximate prompt length in tokens (default: 6000)")
    parser.add_argument("--repeats", type=int, default=30, help="measured runs per path, after one warm-up (default: 30)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)

    if args.vocab:
        return run(args, args.vocab, None)
    with tempfile.TemporaryDirectory(prefix="bench-tokenizer-") as tmp:
        vocab = Path(tmp) / "qwen.tiktoken"
        return run(args, vocab, train_rank_file(vocab, args.ranks, args.corpus_mb))


def run(args: argparse.Namespace, vocab: Path, training: dict[str, float] | None) -> int:
    """Loads both tokenizers from ``vocab``, checks they agree, times them and prints the table."""
    load_ms = {"ours": 0.0, "tokenizers": 0.0}
    started = time.perf_counter()
    ours = QwenAudioTokenizer(vocab)
    load_ms["ours"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    theirs = load_theirs(vocab)
    load_ms["tokenizers"] = (time.perf_counter() - started) * 1000

    prompt = chat_prompt(args.tokens, ours)
    ids = ours.encode_with_specials(prompt)
    their_ids = theirs.encode(prompt, add_special_tokens=False).ids
    same_ids = ids == their_ids
    first_diff = next((i for i, (a, b) in enumerate(zip(ids, their_ids)) if a != b), min(len(ids), len(their_ids)))
    reply_ids = ids[-STREAM_TOKENS - 1:-1]  # ends inside the last turns: Chinese, emoji, timestamps, code
    streamed = {"ours": stream_ours(ours, reply_ids), "tokenizers": stream_theirs(theirs, reply_ids)}
    same_text = streamed["ours"] == streamed["tokenizers"] == ours.decode(reply_ids)

    # How a chat prompt is really built: role and content of each message encoded on their own.
    parts = [part for turn in TURNS for part in turn]
    messages = (parts * (100 // len(parts) + 1))[:100]
    same_message_ids = [ours.encode_with_specials(m) for m in messages] == [
        theirs.encode(m, add_special_tokens=False).ids for m in messages]
    paths = {
        "encode": {"ours": lambda: ours.encode_with_specials(prompt),
                   "tokenizers": lambda: theirs.encode(prompt, add_special_tokens=False)},
        "messages": {"ours": lambda: [ours.encode_with_specials(m) for m in messages],
                     "tokenizers": lambda: [theirs.encode(m, add_special_tokens=False) for m in messages]},
        "stream": {"ours": lambda: stream_ours(ours, reply_ids), "tokenizers": lambda: stream_theirs(theirs, reply_ids)},
    }
    runs = {op: {side: [] for side in sides} for op, sides in paths.items()}
    for op, sides in paths.items():  # warm-up
        for fn in sides.values():
            fn()
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        for op, sides in paths.items():
            for side, fn in sides.items():
                runs[op][side].append(timed_ms(fn))
    summary = {op: {side: statistics.median(ms) for side, ms in sides.items()} for op, sides in runs.items()}

    source = f"{vocab}" if args.vocab else (
        f"byte-level BPE trained here: {training['ranks']} ranks on {training['corpus_mb']:.1f} MB of site-packages "
        f".py/.md in {training['train_s']:.1f} s")
    print(f"vocabulary: {source}; {ours.n_vocab} ids with the specials")
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}".rstrip())
    print(f"median of {args.repeats}, ms")
    print(f"{'operation':<50}{'tiktoken (ours)':>16}{'tokenizers':>12}{'ratio':>8}")
    rows = [
        (f"encode {len(ids)}-token chat prompt, specials", summary["encode"]),
        (f"encode {len(messages)} roles/contents one by one, specials", summary["messages"]),
        (f"stream {len(reply_ids)} tokens to text, one at a time", summary["stream"]),
        ("load the rank file (once)", load_ms),
    ]
    for label, row in rows:
        print(f"{label:<50}{row['ours']:>16.2f}{row['tokenizers']:>12.2f}{row['tokenizers'] / row['ours']:>7.1f}x")
    print(f"identical ids: prompt {'yes' if same_ids else f'NO (first difference at token {first_diff})'}, "
          f"messages {'yes' if same_message_ids else 'NO'}; identical streamed text: {'yes' if same_text else 'NO'}")
    print("ratio = tokenizers / ours (above 1: ours is faster); tokenizers = TikTokenConverter + DecodeStream")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "vocab": str(vocab), "training": training, "prompt_tokens": len(ids), "messages": len(messages),
            "stream_tokens": len(reply_ids),
            "load_ms": load_ms, "summary": summary, "runs": runs, "identical_ids": same_ids and same_message_ids, "identical_text": same_text,
        }, indent=2))
    return 0 if same_ids and same_message_ids and same_text else 1


if __name__ == "__main__":
    sys.exit(main())
