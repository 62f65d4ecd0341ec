"""Strict request bodies, checked before Litestar parses them.

Litestar converts bodies leniently (``"1"`` becomes ``1``), lets some decoder errors through as 500s, and
accepts a JSON body under any content type. This ``before_request`` hook reads the raw body once and holds
it to the handler's declared schema with msgspec in strict mode: the wrong media type is 415, an empty or
undecodable body (invalid UTF-8, runaway nesting, broken JSON) is 400, and a body of the wrong shape or
types is 422. Messages name locations and expected types, never the rejected values.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.enums import RequestEncodingType

from server.errors import InvalidInput, MalformedRequest, UnsupportedMediaType

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_LOCATION = re.compile(r"- at `\$\.([^`]+)`$")


async def check_body(request: Request[Any, Any, Any]) -> None:
    """Reject bodies that the handler's schema would not accept in strict mode."""
    if request.method not in BODY_METHODS:
        return
    parameter = request.route_handler.parsed_fn_signature.parameters.get("data")
    if parameter is None:
        return
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await request.body()
    encoding = getattr(parameter.kwarg_definition, "media_type", RequestEncodingType.JSON)
    if encoding == RequestEncodingType.URL_ENCODED:
        if media_type != RequestEncodingType.URL_ENCODED.value:
            raise MalformedRequest("the body must be form-encoded (application/x-www-form-urlencoded)",
                                   error="invalid_request")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedRequest("the form body is not valid UTF-8", error="invalid_request") from None
        return
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType("the body must be JSON (Content-Type: application/json)")
    if not body.strip():
        raise MalformedRequest("the request body is empty; send a JSON object")
    # Syntax first, over the whole body (400), then shape and types (422): a typed decode would stop at the
    # first mismatch and could call broken JSON merely "the wrong shape".
    try:
        document = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise MalformedRequest("the request body is not valid JSON") from None
    try:
        msgspec.convert(document, type=parameter.annotation, strict=True)
    except msgspec.ValidationError as error:
        message = str(error)
        location = _LOCATION.search(message)
        key = location.group(1).split(".", 1)[0].split("[", 1)[0] if location else None
        details = {"field": key, "errors": [{"message": message, "key": key, "source": "body"}]} if key else {}
        raise InvalidInput(f"the request does not match the schema: {message}", **details) from None
