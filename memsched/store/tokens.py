"""Offline token counting: a documented, deterministic approximation (nothing is downloaded).

Segmentation only needs a stable budget ("about 4000 tokens"), not a model's exact
count, and a real tokenizer would need its vocabulary at run time. The rule:

* ASCII text: one token per 4 characters, rounded up (BPE tokenizers of the GPT and
  Claude families average 3.5 to 4.5 characters per token on English and code).
* Other text: one token per 3 UTF-8 bytes, rounded up (CJK characters are often one
  token each; accented Latin text sits between the two rules).
* Empty text counts 0.

The count is a pure function of the text, so the same events always segment the same way.
"""

from __future__ import annotations

ASCII_CHARS_PER_TOKEN = 4
UTF8_BYTES_PER_TOKEN = 3
TOOL_RESULT_MAX_CHARS = 1000  # tool results are cut to this before counting (REFERENCE.md)


def count_tokens(text: str) -> int:
    """Return the approximate number of tokens in ``text`` (see the module docstring)."""
    if text.isascii():
        return (len(text) + ASCII_CHARS_PER_TOKEN - 1) // ASCII_CHARS_PER_TOKEN
    return (len(text.encode("utf-8", "surrogatepass")) + UTF8_BYTES_PER_TOKEN - 1) // UTF8_BYTES_PER_TOKEN


def event_tokens(event_type: str, text: str) -> int:
    """Return the tokens an event counts for in segmentation (tool results cut to 1000 chars first)."""
    if event_type == "tool_result" and len(text) > TOOL_RESULT_MAX_CHARS:
        text = text[:TOOL_RESULT_MAX_CHARS]
    return count_tokens(text)
