"""`facecycle serve`: a local web demo and JSON/HTTP API around a `Translator` (FastAPI + uvicorn).

Import `facecycle.serve.app` for `create_app`, `TranslatorPipeline` and `ServeOptions`; this
package itself imports nothing heavy.
"""
