"""Published job results: Bacalhau's S3 publisher semantics on any backend, and a verified, contained fetch.

`fscas.publish`, `fscas.fetch` and `fscas.PublishedResult` are the public names; this package holds
the publisher (`publisher`), the fetcher (`fetcher`) and the archive stream and safe extraction
(`archive`).
"""

from fscas.results.fetcher import fetch, fetch_async
from fscas.results.publisher import PublishedResult, parse_publish_url, publish, publish_async, render_key

__all__ = ["PublishedResult", "fetch", "fetch_async", "parse_publish_url", "publish", "publish_async", "render_key"]
