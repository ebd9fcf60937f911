"""Qwen-Audio-Chat and Qwen-Audio (the first generation), natively on transformers 5: no remote code.

- :mod:`.configuration`: the published ``config.json`` (``model_type: "qwen"`` + its ``audio`` block);
- :mod:`.modeling`: the Qwen-7B v1 decoder and the Whisper-derived audio encoder, original parameter names;
- :mod:`.tokenizer`: ``qwen.tiktoken`` with the special tokens at the original ids;
- :mod:`.features`: the original's log-mel (80 bins, 30 s) and audio token counts;
- :mod:`.prompt`: the chat (ChatML) and base (task tags) prompt formats as token ids;
- :mod:`.family`: loading a checkpoint, and the family as the worker sees it;
- :mod:`.tiny`: tiny random checkpoints in the hub's published layout.
"""
