"""The web demo: a FastAPI app with one self-contained page and a small JSON/HTTP API.

Routes
------
``GET /``                 the demo page (inline CSS/JS, no external resources)
``GET /api/info``         JSON: directions, channels, sizes, model, limits, optional features
``POST /api/translate``   multipart form: ``file`` (the image), ``direction`` (optional),
                          ``faces`` / ``expression`` (only when /api/info lists them),
                          ``target`` (conditional models: "AU06=1,AU12=1") -> PNG
``GET /api/health``       ``{"status": "ok"}``

Every error is JSON ``{"error": "<what happened and what to do>"}`` with a 4xx status
(400 bad request, 413 too large, 415 not an image); unexpected failures give 500 with a short
message, never a traceback.

Conditional models (train.mode=conditional): /api/info reports ``mode = "conditional"``, the
model's ``condition`` (columns, kind, value range and each expression's target values) and
``features.expressions`` (the names ``expression`` accepts) with ``features.target = true``; a
translation needs ``expression`` and/or ``target`` (an AU spec as ``facecycle translate --target``
takes it, in the labels' units; its values override the expression's). The page shows an
expression menu and one slider per condition.

Extension point: the server runs a pipeline object; :class:`TranslatorPipeline`
translates the whole image. Face paste-back or conditional translation plug in by
subclassing it, declaring the feature in ``features`` (the page then shows its control) and
handling ``RequestOptions.faces`` / ``RequestOptions.expression`` in ``__call__``.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any, Awaitable, Callable, MutableMapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from facecycle import __version__
from facecycle.errors import FacecycleError
from facecycle.inference.translator import Translator

MB = 1024 * 1024
MULTIPART_SLACK = 64 * 1024  # form boundaries and the small text fields around the file


@dataclass(frozen=True)
class ServeOptions:
    """Limits of one server. `max_size`: longer image side processed (larger images are
    translated at this size and resized back; None = full size). `max_pixels`: decoded images
    above this are refused (decompression bombs). `max_waiting`: translation requests admitted at
    once (one computing, the rest queued); more get 503 at once instead of piling up uploads in
    memory. Uploads are decoded one at a time, off the event loop, when their turn comes, so
    the server holds at most `max_waiting` raw uploads and one decoded image."""

    max_upload_bytes: int = 10 * MB
    max_size: int | None = 1024
    max_pixels: int = 40_000_000
    max_waiting: int = 8


@dataclass(frozen=True)
class RequestOptions:
    """Per-request choices beyond the direction; each is honoured only when the pipeline
    declares the matching feature."""

    faces: bool = False
    expression: str | None = None
    target: str | None = None


class OptionNotAvailable(FacecycleError):
    """A request asked for a feature this server was not started with."""


class TranslatorPipeline:
    """Whole-image translation with a `Translator`.

    `features` is what /api/info reports and what the page shows controls for:
    ``{"faces": bool, "expressions": [names]}``; a conditional translator adds its expressions
    and ``"target": True``.
    """

    features: dict[str, Any] = {"faces": False, "expressions": []}

    def __init__(self, translator: Translator, max_size: int | None = None) -> None:
        self.translator = translator
        self.max_size = max_size

    def info(self) -> dict[str, Any]:
        features = dict(self.features)
        if self.translator.conditional:
            features["expressions"] = list(features.get("expressions") or self.translator.expressions)
            features["target"] = True
        return {**self.translator.info(), "features": features}

    def check_options(self, options: RequestOptions) -> None:
        """OptionNotAvailable when a plain model gets a target or expression."""
        if (options.expression or options.target) and not self.translator.conditional:
            raise OptionNotAvailable("this model is not conditional; target expressions are not available")

    def __call__(self, image: Image.Image, direction: str, options: RequestOptions) -> Image.Image:
        """RGB/L/RGBA PIL image of any size -> translated PIL image of the same size."""
        if options.faces:
            raise OptionNotAvailable("face mode is not available on this server (start it with --faces)")
        self.check_options(options)
        if self.translator.conditional:
            return self.translator.translate(image, max_size=self.max_size, target=options.target,
                                             expression=options.expression)
        return self.translator.translate(image, direction=direction, max_size=self.max_size)


class FacePipeline(TranslatorPipeline):
    """Adds face mode: detect and align the faces in the photo, translate the aligned crops
    and paste them back (`facecycle translate --faces`). Whole-image translation still works
    for requests that leave face mode off."""

    features: dict[str, Any] = {"faces": True, "expressions": []}

    def __init__(self, translator: Translator, max_size: int | None = None, margin: float = 0.25) -> None:
        super().__init__(translator, max_size)
        from facecycle.faces.landmarks import FaceDetector

        self.margin = margin
        self.detector = FaceDetector(mode="image", max_faces=4)  # calls are serialised by the app's lock

    def __call__(self, image: Image.Image, direction: str, options: RequestOptions) -> Image.Image:
        if not options.faces:
            return super().__call__(image, direction, options)
        self.check_options(options)
        import numpy as np

        from facecycle.faces.faceoff import translate_faces
        from facecycle.inference.faces import crop_translator

        if self.translator.conditional:
            generator = self.translator.generator_for(target=options.target, expression=options.expression)
        else:
            generator = self.translator.generator_for(direction)
        result = translate_faces(np.asarray(image.convert("RGB")), crop_translator(generator), detector=self.detector,
                                 size=generator.crop_size, margin=self.margin)
        if not result.faces:
            raise OptionNotAvailable("no face found in this photo; turn face mode off to translate the whole image")
        return Image.fromarray(result.image)


def human_bytes(count: int) -> str:
    """10485760 -> "10 MB", 524288 -> "0.5 MB", 3000 -> "2.93 KB"."""
    if count >= MB // 2:
        return f"{count / MB:.3g} MB"
    return f"{count / 1024:.3g} KB"


def page_html() -> str:
    """The demo page shipped in facecycle/serve/static/index.html."""
    return resources.files("facecycle.serve").joinpath("static/index.html").read_text(encoding="utf-8")


# ---- upload size limit (pure ASGI, so oversized bodies are refused while streaming) ----------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class LimitUploadSize:
    """Refuse request bodies above `max_body` bytes with 413, before the whole body is read.

    A declared Content-Length above the limit is answered at once; a body that grows past it
    (chunked uploads) raises an HTTP 413 inside the endpoint that is reading it.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], max_body: int, message: str) -> None:
        self.app = app
        self.max_body = max_body
        self.message = message

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await JSONResponse({"error": self.message}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise HTTPException(413, self.message)
            return message

        await self.app(scope, limited_receive, send)


# ---- the app -------------------------------------------------------------------------------


def create_app(pipeline: TranslatorPipeline, options: ServeOptions = ServeOptions()) -> FastAPI:
    """A FastAPI app serving `pipeline` under `options` (run it with uvicorn)."""
    too_large = (f"the upload is larger than this server's {human_bytes(options.max_upload_bytes)} limit; send a smaller image "
                 "(or restart the server with a larger --max-upload-mb)")
    app = FastAPI(title="facecycle", version=__version__, docs_url=None, redoc_url=None)
    app.add_middleware(LimitUploadSize, max_body=options.max_upload_bytes + MULTIPART_SLACK, message=too_large)
    compute_lock = threading.Lock()  # one translation at a time: each already uses every CPU core
    page = page_html()

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"bad request: {exc.errors()[0].get('msg', 'invalid input')}"}, status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server log (uvicorn prints it); the client gets one line.
        return JSONResponse({"error": f"internal error while handling the request ({type(exc).__name__}); "
                                      "see the server log"}, status_code=500)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/api/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        return {**pipeline.info(), "version": __version__, "max_upload_bytes": options.max_upload_bytes,
                "max_size": options.max_size}

    admitted = [0]  # translation requests being handled; touched on the event loop only

    @app.post("/api/translate")
    async def translate(request: Request) -> Response:
        if admitted[0] >= options.max_waiting:
            raise HTTPException(503, f"the server is busy ({admitted[0]} translations waiting); try again in a moment")
        admitted[0] += 1
        try:
            return await translate_one(request)
        finally:
            admitted[0] -= 1

    async def translate_one(request: Request) -> Response:
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, "send the image as a multipart/form-data file field named 'file'")
        data = await upload.read()
        if len(data) > options.max_upload_bytes:
            raise HTTPException(413, too_large)
        if not data:
            raise HTTPException(400, "the uploaded file is empty")
        info_now = pipeline.info()
        direction = str(form.get("direction") or info_now["default_direction"])
        if direction not in info_now["directions"]:
            raise HTTPException(400, f"direction '{direction}' is not available; choose one of: "
                                     f"{', '.join(info_now['directions'])}")
        request_options = RequestOptions(faces=str(form.get("faces", "")).lower() in ("1", "true", "on", "yes"),
                                         expression=str(form.get("expression") or "") or None,
                                         target=str(form.get("target") or "") or None)
        name = getattr(upload, "filename", None) or "upload"

        def work() -> bytes:
            with compute_lock:  # decoding here keeps it off the event loop and one image at a time
                image = decode_image(data, options.max_pixels, name)
                result = pipeline(image, direction, request_options)
            buffer = io.BytesIO()
            result.save(buffer, format="PNG")
            return buffer.getvalue()

        try:
            png = await run_in_threadpool(work)
        except FacecycleError as exc:
            raise HTTPException(400, str(exc)) from None
        return Response(png, media_type="image/png",
                        headers={"Content-Disposition": 'inline; filename="translated.png"',
                                 "X-Facecycle-Direction": direction})

    return app


def decode_image(data: bytes, max_pixels: int, name: str = "upload") -> Image.Image:
    """Decode uploaded bytes fully; raises HTTP 415 (not an image), 413 (too many pixels) or 400 (damaged)."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # PIL's own ceiling, far above max_pixels
        raise HTTPException(413, f"'{name}' has too many pixels: {exc}; this server accepts at most "
                                 f"{max_pixels / 1e6:g} megapixels") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise HTTPException(415, f"'{name}' is not an image this server can read; upload a PNG, JPEG, WebP "
                                 "or BMP photo") from None
    width, height = image.size
    if width * height > max_pixels:
        raise HTTPException(413, f"the image is {width}x{height} pixels; this server accepts at most "
                                 f"{max_pixels / 1e6:g} megapixels")
    try:
        image.load()
        return ImageOps.exif_transpose(image)  # phone portraits are stored sideways (EXIF Orientation)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise HTTPException(400, f"'{name}' could not be decoded (damaged or truncated?): {exc}") from None
