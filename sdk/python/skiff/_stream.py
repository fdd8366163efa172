"""Process I/O: StreamReader (stdout, stderr), StreamWriter (stdin) and the
wait helpers shared by sandboxes and their exec'd processes.

Output streams come from ``GET /v1/processes/<pid>/stdout?offset=N``: each
reader remembers how many bytes it has handed out, so ``read()`` after a
partial iteration goes on where the iteration stopped.
"""

from __future__ import annotations

import codecs
from typing import Any, Generic, Iterator, Optional, TypeVar, Union

from . import _client

T = TypeVar("T", str, bytes)

# Seconds one long poll of /wait lasts before the client asks again.  Waiting
# in slices keeps every request well under any idle timeout on the way.
_WAIT_SLICE = 60


class StreamReader(Generic[T]):
    """A process's stdout or stderr.

    ``read()`` returns everything from the current position to EOF (the
    process's end), decoded as UTF-8 when the stream is text.  Iterating
    yields chunks as the process writes them (like Modal; a chunk is not
    necessarily a whole line).
    """

    def __init__(self, client: _client.Client, process_id: str, name: str,
                 text: bool = True) -> None:
        self._client = client
        self._process_id = process_id
        self._name = name
        self._text = text
        self._offset = 0

    def __repr__(self) -> str:
        return f"<StreamReader {self._process_id} {self._name}>"

    def _chunks(self) -> Iterator[bytes]:
        path = f"/v1/processes/{self._process_id}/{self._name}?offset={self._offset}"
        return self._client.stream_bytes("GET", path)

    def read(self) -> T:
        """The rest of the stream, until the process closes it."""
        data = bytearray()
        for chunk in self._chunks():
            data += chunk
        self._offset += len(data)
        if self._text:
            return bytes(data).decode("utf-8", "replace")  # type: ignore[return-value]
        return bytes(data)  # type: ignore[return-value]

    def __iter__(self) -> Iterator[T]:
        if not self._text:
            for chunk in self._chunks():
                self._offset += len(chunk)
                yield chunk  # type: ignore[misc]
            return
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        start, received = self._offset, 0
        for chunk in self._chunks():
            received += len(chunk)
            text = decoder.decode(chunk)
            # Bytes of a character split across chunks are not handed out yet.
            self._offset = start + received - len(decoder.getstate()[0])
            if text:
                yield text  # type: ignore[misc]
        tail = decoder.decode(b"", final=True)
        self._offset = start + received
        if tail:
            yield tail  # type: ignore[misc]


class StreamWriter:
    """A process's stdin.

    ``write()`` buffers in this process; ``drain()`` sends what is buffered;
    ``write_eof()`` sends what is buffered and closes stdin at once (so
    ``write(); write_eof()`` needs no ``drain()``, and a ``drain()`` after it
    is harmless).  Writing after ``write_eof()`` raises ValueError.
    """

    def __init__(self, client: _client.Client, process_id: str) -> None:
        self._client = client
        self._process_id = process_id
        self._buf = bytearray()
        self._eof = False

    def __repr__(self) -> str:
        return f"<StreamWriter {self._process_id} stdin>"

    def write(self, data: Union[bytes, bytearray, memoryview, str]) -> None:
        """Buffers data (str is encoded as UTF-8) to send on ``drain()``."""
        if self._eof:
            raise ValueError("stdin is closed (write_eof() was called)")
        if isinstance(data, str):
            self._buf += data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            self._buf += data
        else:
            raise TypeError(f"stdin.write takes bytes or str, got {type(data).__name__}")

    def write_eof(self) -> None:
        """Sends what is buffered and closes the process's stdin."""
        if self._eof:
            return
        self._send(eof=True)
        self._eof = True

    def drain(self) -> None:
        """Sends what is buffered."""
        if self._buf:
            self._send(eof=False)

    def _send(self, eof: bool) -> None:
        path = f"/v1/processes/{self._process_id}/stdin" + ("?eof=1" if eof else "")
        data = bytes(self._buf)
        self._client.request("POST", path, data=data)
        del self._buf[: len(data)]


def wait_process(client: _client.Client, process_id: str,
                 timeout: Optional[float] = None) -> dict[str, Any]:
    """Long-polls ``/wait`` until the process ends (timeout None) or for at
    most ``timeout`` seconds; returns the last answer (check ``done``)."""
    while True:
        slice_s = _WAIT_SLICE if timeout is None else min(timeout, _WAIT_SLICE)
        resp: dict[str, Any] = client.request(
            "GET", f"/v1/processes/{process_id}/wait?timeout={slice_s:g}",
            timeout=slice_s + 30)
        if resp.get("done"):
            return resp
        if timeout is not None:
            timeout -= slice_s
            if timeout <= 0:
                return resp
