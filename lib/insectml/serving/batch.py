"""One MMS batch → one model call: decode every request, answer the bad ones with a 4xx
for their index only, predict the rest together."""

from __future__ import annotations

from collections.abc import Callable

# Content-Types every handler takes besides its own media type: a client that names none,
# or names raw bytes.
_ANY = ("", "application/octet-stream")


def answer_batch(
    data: list[dict], context, decode: Callable, predict: Callable[[list], list], media: str | None = None
) -> list:
    """``decode(body)`` raises UserError for a bad body (400); ``predict(items)`` returns one
    answer per decoded item, in order. With ``media`` (``"audio"``, ``"image"``), a request
    whose Content-Type is neither ``media/*`` nor application/octet-stream gets 415."""
    from insectml.errors import UserError

    out: list = [None] * len(data)
    items, slots = [], []
    for idx, request in enumerate(data):
        field = "body" if request.get("body") is not None else "data"
        body = request.get(field)
        declared = content_type(context, idx, field)
        if media is not None and declared not in _ANY and not declared.startswith(f"{media}/"):
            problem = (
                f"request body: Content-Type {declared} is not accepted; send {media}/* or application/octet-stream"
            )
            context.set_response_status(415, status_phrase(problem), idx)
            out[idx] = {"error": problem}
            continue
        try:
            items.append(decode(body))
            slots.append(idx)
        except UserError as exc:
            context.set_response_status(400, status_phrase(str(exc)), idx)
            out[idx] = {"error": str(exc)}
    for idx, answer in zip(slots, predict(items) if items else [], strict=True):
        out[idx] = answer
    return out


def content_type(context, idx: int, field: str) -> str:
    """The media type (lower case, no parameters) request ``idx`` declared for ``field``, or
    "" when it declared none or the context does not say (MMS keeps it per input field)."""
    try:
        header = context.get_request_header(idx, field)
    except (AttributeError, IndexError, KeyError, TypeError):
        return ""
    value = header.get("content-type") if isinstance(header, dict) else header
    return str(value or "").split(";")[0].strip().lower()


def status_phrase(text: str) -> str:
    """``text`` as an HTTP reason phrase: one line of ASCII. MMS 1.1.11's worker frames the
    phrase with its length in characters but sends its UTF-8 bytes, so one non-ASCII
    character corrupts the frame and kills the worker; the JSON body keeps the full text."""
    return " ".join(text.split()).encode("ascii", "backslashreplace").decode("ascii")
