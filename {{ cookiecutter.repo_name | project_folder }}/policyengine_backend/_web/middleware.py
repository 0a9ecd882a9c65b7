"""What wraps every request: the access log, the body limits, and letting
go of a request whose client has left.

Every request gets one log line (``AccessLog``) and every response says
which model answered it (the ``PolicyEngine-Model`` header).
"""

import asyncio
import contextlib
import logging
import time

from opentelemetry import trace

from policyengine_backend import _logs as logs
from policyengine_backend._errors import BodyTimeout, BodyTooLarge, Bug
from policyengine_backend._settings import MODEL_VERSION
from policyengine_backend._web.responses import MODEL_HEADER, error_response

access_logger = logging.getLogger("policyengine_backend.access")


class BodyLimits:
    """Read the whole request body before the app sees it, within limits,
    then stop answering if the client leaves.

    Over MAX_BODY_BYTES (declared or counted, so a chunked upload cannot
    pass either) the answer is a 413; a body still arriving after
    BODY_TIMEOUT_SECONDS gets a 408, so a client that sends a byte a second
    cannot hold a request open.

    Once the body is in, the app runs while this listens for the client's
    disconnect: a client gone (a closed tab, a slider moved on) cancels its
    request, which stops its calculation unless another request waits for
    the same one. Nothing is left queued for nobody, and a server shutting
    down does not wait for it.

    Not Starlette's own limit (``max_body_size=``, its
    ``RequestBodyLimitMiddleware``): when a request declares a
    Content-Length over the limit, as ordinary clients do, it replaces
    whatever the app answers with a plain-text "Content Too Large", so the
    413 could not be the JSON error body that names MAX_BODY_BYTES; and it
    has no time limit. The 408 needs the body read here anyway, and counting
    its bytes on the way is all the size limit takes.
    """

    def __init__(self, app, max_bytes: int, timeout_seconds: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self.too_large(scope, receive, send)
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.timeout_seconds):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # the client left
                        return
                    chunks.append(message.get("body", b""))
                    size += len(chunks[-1])
                    if size > self.max_bytes:
                        return await self.too_large(scope, receive, send)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            response = error_response(
                BodyTimeout(
                    f"request body not received within {self.timeout_seconds:g} s "
                    "(BODY_TIMEOUT_SECONDS)"
                )
            )
            return await response(scope, receive, send)
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.until_the_client_leaves(self.app(scope, replay, send), receive)

    @staticmethod
    async def until_the_client_leaves(answering, receive) -> None:
        """Run ``answering``; cancel it if the client disconnects first."""
        app = asyncio.ensure_future(answering)

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        listening = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({app, listening}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Also when this request is cancelled itself (the server stops).
            listening.cancel()
            if not app.done():
                app.cancel()
                logs.note(outcome="the client left; its calculation was let go")
                with contextlib.suppress(asyncio.CancelledError):
                    await app
        if not app.cancelled():
            app.result()  # raises what the app raised, for the handlers outside

    async def too_large(self, scope, receive, send):
        response = error_response(
            BodyTooLarge(
                f"request body is over the limit of {self.max_bytes} bytes (MAX_BODY_BYTES)"
            )
        )
        await response(scope, receive, send)


class AccessLog:
    """One log line per request, and the model version on every response.

    The line has the method, path, status and duration, plus what the
    request noted on its way (``logs.note``): for a calculation, where the
    answer came from, the policy path, axis points and time waiting for the
    worker; for an error, its message. Never the body: a household can
    describe a real person.

    Outermost of the app's middleware, so it sees the answers of BodyLimits
    too. An unhandled error passes through here as an exception (Starlette
    sends its 500 from outside every middleware) and is logged as a 500.
    """

    def __init__(self, app):
        self.app = app
        self.header = (MODEL_HEADER.lower().encode(), MODEL_VERSION.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        fields: dict = {}
        token = logs.start_request(fields, f"{scope['method']} {scope['path']}")
        status = None

        async def send_with_model(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # What the request noted, on its trace span too (when traced).
                trace.get_current_span().set_attributes(
                    {**fields, "model": MODEL_VERSION}
                )
                headers = [*message.get("headers", []), self.header]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_model)
        except Exception as exc:
            status = Bug.status
            fields["error"] = f"unhandled {type(exc).__name__}; traceback in the log"
            raise
        finally:
            logs.end_request(token)
            self.log(scope, status, time.perf_counter() - started, fields)

    @staticmethod
    def log(scope, status: int | None, seconds: float, fields: dict) -> None:
        line = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            **fields,
            "model": MODEL_VERSION,
        }
        # ERROR only for what needs a fix here: a bug (500). A refused
        # request, a /health "starting" (503) or a timeout (504) is WARNING.
        outcome = str(status) if status else "client left before the answer"
        if status is None:
            level = logging.WARNING
        elif status >= 500 and status not in (503, 504):
            level = logging.ERROR
        elif status >= 400:
            level = logging.WARNING
        else:
            level = logging.INFO
        access_logger.log(
            level,
            "%s %s %s in %.0f ms",
            line["method"],
            line["path"],
            outcome,
            line["duration_ms"],
            extra=line,
        )
