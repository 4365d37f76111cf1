"""Request bodies -> image bytes, in memory only: size limits, multipart (parsed here, never spooled to disk),
base64 JSON, raw image bodies; every problem is an `HTTPProblem` that the app turns into a JSON error."""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

# Pillow decoders a server tries: the common photo formats, not every plugin Pillow has (EPS, PSD, ...)
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO")
RAW_TYPES = {"image/jpeg", "image/jpg", "image/png", "image/webp", "image/bmp", "image/gif", "image/tiff",
             "application/octet-stream"}
_FORM = "application/x-www-form-urlencoded"
_URL = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://")
_DATA_URL = re.compile(r"^\s*data:([^;,]*)(;base64)?,", re.IGNORECASE)


class HTTPProblem(Exception):
    """A request the server refuses: `status` and a one-line message (sent as {"error": message})."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Upload:
    """One image of a request, as bytes, with the name the client gave it (or its place in the request)."""

    data: bytes
    name: str


@dataclass
class Parsed:
    uploads: list[Upload] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)  # options: JSON values, or form fields as strings


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes `limit` bytes (a lying Content-Length included)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPProblem(413, f"request body of {int(declared):,} bytes is over the {limit:,}-byte limit (--max-upload-mb)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPProblem(413, f"request body is over the {limit:,}-byte limit (--max-upload-mb)")
        chunks.append(chunk)
    return b"".join(chunks)


def refuse_url(value: str, key: str) -> None:
    """A URL or a server path where an image is expected: refused, nothing is fetched or opened."""
    if _URL.match(value):
        raise HTTPProblem(400, f"{key}: URLs are not accepted (the server fetches nothing); send the image itself, "
                               "as a file upload or base64")


def decode_base64(value: Any, key: str) -> bytes:
    """Base64 (standard or URL-safe, optionally a data: URL) -> bytes; a URL or bad base64 is a 400."""
    if not isinstance(value, str):
        raise HTTPProblem(400, f"{key}: expected a base64 string, got {type(value).__name__}")
    refuse_url(value, key)
    text = value
    if m := _DATA_URL.match(text):
        if not m.group(2):
            raise HTTPProblem(400, f"{key}: a data: URL must be base64 (data:image/jpeg;base64,...)")
        text = text[m.end():]
    text = re.sub(r"\s+", "", text)
    if not text:
        raise HTTPProblem(400, f"{key}: empty image (no base64 data)")
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4) if not text.endswith("=") else ""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        looks_like_path = "/" in value[:200] and "." in value[-8:] and " " not in value.strip()
        hint = " (a path on the server is not an input: send the image bytes)" if looks_like_path else ""
        raise HTTPProblem(400, f"{key}: not valid base64{hint}") from None


def _json_body(body: bytes) -> dict:
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPProblem(400, f"request body is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise HTTPProblem(400, "JSON body must be an object, e.g. {\"image\": \"<base64>\"}")
    return obj


def _form_body(body: bytes) -> dict:
    """application/x-www-form-urlencoded (what some deepface clients send): image keys hold base64 text."""
    from urllib.parse import parse_qsl

    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        raise HTTPProblem(400, "form body is not UTF-8 text") from None


def parse_multipart(body: bytes, content_type: str, file_keys: tuple[str, ...], max_parts: int = 256) -> Parsed:
    """multipart/form-data parsed in memory: file parts named in `file_keys` become uploads, other parts options."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPProblem(400, "multipart/form-data without a boundary")
    parts: list[dict] = []
    state: dict[str, Any] = {}

    def on_part_begin():
        if len(parts) >= max_parts:
            raise HTTPProblem(400, f"more than {max_parts} form parts")
        parts.append({"headers": {}, "data": []})
        state["field"], state["value"] = b"", b""

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        parts[-1]["headers"][state["field"].decode("latin-1").lower()] = state["value"].decode("latin-1")
        state["field"], state["value"] = b"", b""

    def on_part_data(data, start, end):
        parts[-1]["data"].append(data[start:end])

    parser = MultipartParser(boundary, {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                                        "on_header_value": on_header_value, "on_header_end": on_header_end,
                                        "on_part_data": on_part_data})
    try:
        parser.write(body)
        parser.finalize()
    except HTTPProblem:
        raise
    except Exception as exc:  # noqa: BLE001 - python-multipart's own errors
        raise HTTPProblem(400, f"malformed multipart body ({exc})") from None
    out = Parsed()
    for part in parts:
        disp, opts = parse_options_header(part["headers"].get("content-disposition", ""))
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        data = b"".join(part["data"])
        filename = opts.get(b"filename")
        if name in file_keys:
            if filename is None:  # a text field where an image was expected: a URL, a path or base64
                text = data.decode("utf-8", "replace")
                refuse_url(text, name)
                out.uploads.append(Upload(decode_base64(text, name), name))
                continue
            ctype = part["headers"].get("content-type", "application/octet-stream").split(";")[0].strip().lower()
            if ctype not in RAW_TYPES:
                raise HTTPProblem(415, f"{name}: content type {ctype} is not an image "
                                       "(send image/jpeg, image/png, image/webp, ... or application/octet-stream)")
            out.uploads.append(Upload(data, filename.decode("utf-8", "replace") or name))
        elif name:
            out.fields[name] = data.decode("utf-8", "replace")
    return out


async def parse_request(request: Request, limit: int, file_keys: tuple[str, ...], json_keys: tuple[str, ...],
                        many: bool = False) -> Parsed:
    """Images and options of a request: multipart (`file_keys`), JSON with base64 under one of `json_keys` (a list
    when `many`), or a raw image body. Other content types are a 415."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not ctype:
        raise HTTPProblem(415, "no Content-Type: send multipart/form-data, application/json or an image")
    if ctype not in RAW_TYPES and ctype not in ("multipart/form-data", "application/json", _FORM):
        raise HTTPProblem(415, f"unsupported media type {ctype}: send multipart/form-data (field "
                               f"{file_keys[0]!r}), application/json with base64, or an image body")
    body = await read_body(request, limit)
    if ctype == "multipart/form-data":
        parsed = parse_multipart(body, request.headers["content-type"], file_keys)
    elif ctype in ("application/json", _FORM):
        obj = _json_body(body) if ctype == "application/json" else _form_body(body)
        parsed = Parsed(fields={k: v for k, v in obj.items() if k not in json_keys})
        key = next((k for k in json_keys if k in obj), None)
        if key is not None:
            values = obj[key]
            if many:
                if not isinstance(values, list):
                    raise HTTPProblem(400, f"{key}: expected a list of base64 images")
                parsed.uploads = [Upload(decode_base64(v, f"{key}[{i}]"), f"{key}[{i}]") for i, v in enumerate(values)]
            else:
                parsed.uploads = [Upload(decode_base64(values, key), key)]
    else:
        parsed = Parsed(uploads=[Upload(body, "body")])
    if not parsed.uploads:
        keys = " or ".join(repr(k) for k in (file_keys if ctype == "multipart/form-data" else json_keys))
        raise HTTPProblem(400, f"no image in the request: send it as {keys}")
    return parsed
