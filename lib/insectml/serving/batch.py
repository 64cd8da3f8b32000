"""One MMS batch → one model call: decode every request, answer the bad ones with 400
for their index only, predict the rest together."""

from __future__ import annotations

from collections.abc import Callable


def answer_batch(data: list[dict], context, decode: Callable, predict: Callable[[list], list]) -> list:
    """``decode(body)`` raises UserError for a bad body; ``predict(items)`` returns one
    answer per decoded item, in order."""
    from insectml.errors import UserError

    out: list = [None] * len(data)
    items, slots = [], []
    for idx, request in enumerate(data):
        body = request.get("body") if request.get("body") is not None else request.get("data")
        try:
            items.append(decode(body))
            slots.append(idx)
        except UserError as exc:
            context.set_response_status(400, str(exc), idx)
            out[idx] = {"error": str(exc)}
    for idx, answer in zip(slots, predict(items) if items else [], strict=True):
        out[idx] = answer
    return out
