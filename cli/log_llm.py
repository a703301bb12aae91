"""What `tars log` shows of the language models: a cycle's usage on its line, and `tars log llm`.

The figures are the ``llm`` field of each ``CycleCompleted`` event
(``evolution.llm_usage``; docs/llm.md, "The cycle's llm field"), read back defensively.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cli.common import console
from evolution.llm_budget import Limits, describe
from evolution.llm_usage import from_log, total


def llm_summary(stored: Any) -> str:
    """ "; llm 2 requests (1 failed), 540 tokens, 0.0000 money, 0 cache hits; failed: timeout"
    when the cycle asked a model, else ""."""
    if not stored:
        return ""
    usage = from_log(stored)
    spend = usage.spend
    text = (
        f"; llm {spend.requests} requests ({spend.failed} failed), {spend.tokens:,} tokens, "
        f"{spend.money:.4f} money, {spend.cache_hits} cache hits"
    )
    if usage.failures:
        text += f"; failed: {', '.join(f.kind for f in usage.failures)}"
    return text


def show_usage(genome: str, cycles: Sequence[dict[str, Any]]) -> None:
    """Each cycle's spend against the budget, every failure with its kind and reason, the total."""
    asked = [(data.get("cycle"), from_log(data["llm"])) for data in cycles if data.get("llm")]
    if not asked:
        console.print(f"{genome}: no cycle asked a language model", highlight=False)
        return
    for cycle, usage in asked:
        line = f"cycle {cycle}: {describe(usage.spend, usage.limits)}"
        out = f"{line}; the run so far: {describe(usage.run, usage.limits)}"
        console.print(out, highlight=False, markup=False, soft_wrap=True)
        for failure in usage.failures:
            text = f"  failed [{failure.kind}] {failure.reason}"
            console.print(text, highlight=False, markup=False, soft_wrap=True)
        if usage.stopped:
            console.print(f"  stopped asking: {usage.stopped}", highlight=False, markup=False)
    spend = total(usage for _, usage in asked)
    summed = describe(spend, Limits())
    console.print(f"total over {len(asked)} cycles: {summed}", highlight=False, soft_wrap=True)
