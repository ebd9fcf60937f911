"""Where a cached follow-up's prefill time goes: the language model's forward over new tokens after a
cached prefix, against the same number of tokens with no prefix.

    python -m bench.prefill_growth [--prefix 4353] [--new 886] [--first 817] [--repeats 7]

The defaults are turn 6 and turn 1 of ``bench.multiturn`` (tiny checkpoint). A third figure replaces
the causal mask with none: a wrong result, but the upper bound of what an attention kernel that needs
no mask for the cached prefix could save. Random embeddings stand in for the prompt (only shapes matter
to the timing). A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint directory (default: build the tiny random one)")
    parser.add_argument("--prefix", type=int, default=4353, help="cached prompt tokens (default: turn 6's, 4353)")
    parser.add_argument("--new", type=int, default=886, help="new tokens after them (default: turn 6's, 886)")
    parser.add_argument("--first", type=int, default=817, help="tokens of a first turn (default: 817)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache

    from model.loading import load_model_and_processor, locate_checkpoint, resolve_placement
    from model.tiny import build_tiny_checkpoint

    checkpoint = args.checkpoint or str(build_tiny_checkpoint(Path(tempfile.mkdtemp(prefix="bench-prefill-")) / "tiny"))
    model, _ = load_model_and_processor(locate_checkpoint(checkpoint), resolve_placement("cpu", "auto"))
    language_model = model.model.language_model
    config = model.config.get_text_config()

    def forward_ms(prefix: int, new: int) -> float:
        times = []
        for _ in range(args.repeats):
            cache = DynamicCache(config=config)
            with torch.inference_mode():
                if prefix:
                    language_model(inputs_embeds=torch.randn(1, prefix, config.hidden_size), cache=cache)
                embeds = torch.randn(1, new, config.hidden_size)
                started = time.perf_counter()
                language_model(inputs_embeds=embeds, cache=cache,
                               attention_mask=torch.ones(1, prefix + new, dtype=torch.long))
                times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000

    first = forward_ms(0, args.first)
    follow_up = forward_ms(args.prefix, args.new)
    sdpa = F.scaled_dot_product_attention

    def without_mask(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):  # noqa: ANN001
        return sdpa(q, k, v, attn_mask=None, dropout_p=dropout_p, is_causal=False, scale=scale, enable_gqa=enable_gqa)

    F.scaled_dot_product_attention = without_mask
    try:
        unmasked = forward_ms(args.prefix, args.new)
    finally:
        F.scaled_dot_product_attention = sdpa
    print(f"language-model forward, median of {args.repeats} (CPU, {checkpoint}):")
    print(f"  first turn, {args.first} tokens: {first:.1f} ms")
    print(f"  follow-up, {args.new} new tokens after {args.prefix} cached: {follow_up:.1f} ms")
    print(f"  the same without the attention mask (wrong output; the bound of what a mask-free kernel saves): "
          f"{unmasked:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
