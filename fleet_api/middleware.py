"""Cross-cutting request hygiene: request ids, body size cap, safe headers."""

from __future__ import annotations

import io
import itertools
import os
import re

import falcon

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class RequestHygiene:
    """Runs first and last for every request.

    - Every request gets an id: the client's `X-Request-ID` when it is sane,
      else a fresh one; it comes back in the response, and gunicorn's access
      log and our error log carry it.
    - Bodies over `max_body_bytes` get 413 before anything reads them,
      chunked ones included.
    - Responses say `X-Content-Type-Options: nosniff`.
    """

    def __init__(self, max_body_bytes: int) -> None:
        self._max_body = max_body_bytes
        self._ids = (None, "", None)  # (pid, random prefix, counter), one tuple

    def _fresh_id(self) -> str:
        """A random per-process prefix and a counter: unique across workers
        and hosts, and no syscall per request (uuid4 costs one). The state is
        swapped in as one tuple, so a thread never sees half of it; two
        threads racing in a new worker just make two prefixes."""
        pid, prefix, counter = self._ids
        if pid != os.getpid():  # new in each forked worker
            pid, prefix, counter = os.getpid(), os.urandom(8).hex(), itertools.count(1)
            self._ids = (pid, prefix, counter)
        return f"{prefix}-{next(counter):x}"

    def request_id(self, environ: dict) -> str:
        """The client's X-Request-ID when it is sane, else a fresh one."""
        given = environ.get("HTTP_X_REQUEST_ID")
        return given if given and _SANE_REQUEST_ID.fullmatch(given) else self._fresh_id()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.request_id = self.request_id(req.env)
        resp.set_header("X-Request-ID", req.context.request_id)
        resp.set_header("X-Content-Type-Options", "nosniff")
        length = req.content_length
        if length is not None:
            if length > self._max_body:
                raise self._too_large()
        elif "chunked" in req.env.get("HTTP_TRANSFER_ENCODING", "").lower():
            self._buffer_chunked(req)

    def _too_large(self) -> falcon.HTTPContentTooLarge:
        return falcon.HTTPContentTooLarge(description=f"The body may be at most {self._max_body} bytes.")

    def _buffer_chunked(self, req: falcon.Request) -> None:
        """No Content-Length to check up front: read at most one byte past
        the cap, then hand Falcon the buffered body with its length."""
        data = req.env["wsgi.input"].read(self._max_body + 1)
        if len(data) > self._max_body:
            raise self._too_large()
        req.env["wsgi.input"] = io.BytesIO(data)
        req.env["CONTENT_LENGTH"] = str(len(data))


UNMATCHED_ROUTE = "unmatched"  # the route of a request that no route matched
_CONVERTER = re.compile(r"\{(\w+):[^}]*\}")


def route_label(template: str | None) -> str:
    """`/api/ships/{ship_id:int(...)}` -> `/api/ships/{ship_id}`; None -> unmatched."""
    return UNMATCHED_ROUTE if template is None else _CONVERTER.sub(r"{\1}", template)


class RouteLabels:
    """A request's route template as metrics and logs name it,
    `/api/ships/{ship_id}` (converters left out), never its raw path: ids and
    query strings would make one series per request. Labels are kept per
    template, so the cache holds at most one entry per route."""

    def __init__(self) -> None:
        self._labels: dict[str | None, str] = {None: UNMATCHED_ROUTE}

    def __call__(self, req: falcon.Request) -> str:
        template = req.uri_template
        label = self._labels.get(template)
        if label is None:
            label = self._labels[template] = route_label(template)
        return label


class DurableAnswers:
    """Answered means on disk, for reads too: a request whose reads may
    have seen a commit whose fsync is still running (SQLite fsyncs after
    its write lock, see store/walsync.py) waits for it before it is
    answered, whatever the status."""

    def __init__(self, store) -> None:
        self._settle = store.settle

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool
    ) -> None:
        self._settle()
