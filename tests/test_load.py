"""A small run of the load script (bench/load.py): concurrent clients each get exactly their own replies.

The full-size run (16 clients x 5 turns, 500-request soak) is a benchmark whose figures are in the README.
"""

from __future__ import annotations

import argparse

import pytest

from bench.load import run


@pytest.mark.parametrize("api", ["chat", "v1"])
def test_concurrent_clients_get_their_own_single_client_replies(api, tiny_checkpoint):
    result = run(argparse.Namespace(url=None, checkpoint=str(tiny_checkpoint), api=api, clients=4, turns=2, soak=0,
                                    max_seconds=300))
    assert result["requests"] == 8
    assert result["errors"] == []
    assert result["mismatches"] == []
    if api == "chat":  # /v1 keeps nothing on disk; /chat uploads go when each client's session ends
        assert result["upload_files"] == 0
