"""Uploads (E2): one multipart part named ``file``, answered with an ``fi_…`` id."""

from __future__ import annotations

import asyncio
import io
import mimetypes
import os
from collections.abc import Callable
from typing import BinaryIO, Union

import aiohttp

from ..errors import InvalidRequestError

UploadInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]
"""A file to upload: a path (``str`` or ``PathLike``), the bytes, or a binary file object."""


async def read_upload(file: UploadInput, filename: str | None) -> tuple[bytes, str]:
    """The file's bytes and the name to send. Paths are read off the event loop."""
    if isinstance(file, (bytes, bytearray, memoryview)):
        data = bytes(file)
        name = filename or "upload.bin"
    elif isinstance(file, (str, os.PathLike)):
        path = os.fspath(file)
        data = await asyncio.to_thread(_read_path, path)
        name = filename or os.path.basename(path)
    elif isinstance(file, io.IOBase) or hasattr(file, "read"):
        data = await asyncio.to_thread(file.read)
        if not isinstance(data, bytes):
            raise InvalidRequestError("Upload a binary file object (opened with 'rb').")
        name = filename or os.path.basename(str(getattr(file, "name", ""))) or "upload.bin"
    else:
        raise InvalidRequestError(f"Cannot upload a {type(file).__name__}: pass a path or bytes.")
    if not data:
        # The API answers 400 for an empty part; nothing is gained by sending it.
        raise InvalidRequestError("The file is empty; the upload endpoint rejects empty files.")
    return data, name


def _read_path(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def form_factory(
    data: bytes, filename: str, content_type: str | None
) -> Callable[[], aiohttp.FormData]:
    """A builder of the multipart form: a fresh one per attempt, so a retry can resend it."""
    kind = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"

    def build() -> aiohttp.FormData:
        form = aiohttp.FormData()
        form.add_field("file", data, filename=filename, content_type=kind)
        return form

    return build
