"""What an `s3://` store is configured with: its options, botocore's shared config, its credentials."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from fscas.backends.s3_http import ATTEMPTS, Credentials
from fscas.backends.s3_wire import translated

__all__ = ["S3Options", "chain_credentials", "shared_config", "static_credentials"]

_UNHONOURED: dict[str, set[str] | None] = {
    "s3.addressing_style": {"virtual"}, "s3.payload_signing_enabled": {"true"},
    "s3.use_accelerate_endpoint": {"true"}, "s3.use_dualstack_endpoint": {"true"},
    "use_dualstack_endpoint": {"true"}, "use_fips_endpoint": {"true"}, "sigv4a_signing_region_set": None,
}
"""Settings botocore honours and the fast path (path-style, SigV4, one endpoint, a body hash only where
it protects the body) cannot: set to one of these values, every request goes through botocore. A
`None` entry means any value."""


@attrs.frozen(kw_only=True)
class S3Options:
    """Options of an `s3://` store. Unset values come from the AWS SDK's own chain."""

    endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO, SeaweedFS). Env: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL."""
    region: str | None = None
    """Env: AWS_REGION, AWS_DEFAULT_REGION; `us-east-1` for a custom endpoint."""
    profile: str | None = None
    """Shared-credentials profile. Env: AWS_PROFILE."""
    anon: bool = False
    """Unsigned requests (public buckets)."""
    key: str | None = attrs.field(default=None, repr=False)
    """Access key id. Env: AWS_ACCESS_KEY_ID."""
    secret: str | None = attrs.field(default=None, repr=False)
    """Secret access key. Env: AWS_SECRET_ACCESS_KEY. Never printed."""
    token: str | None = attrs.field(default=None, repr=False)
    """Session token. Env: AWS_SESSION_TOKEN. Never printed."""
    addressing_style: str | None = None
    """`path` or `virtual`; `path` by default with a custom endpoint (MinIO needs it)."""
    part_size: int = 8 * 2**20
    """Multipart part size; streams shorter than one part go as a single PUT."""
    upload_cutoff: int = 200 * 2**20
    """On the fast path, a local file up to this size goes as one PUT even when larger than a part
    (read once to send it; twice where the server checks the SHA-256 the signature carries), as rclone's
    `--s3-upload-cutoff` (the same default): one request where multipart takes a part's worth each
    plus two, which the server pays for (measured: 4 x 64 MiB up in 2.35 s instead of 3.47 s)."""
    part_concurrency: int = 4
    """Multipart parts in flight at once, over all the objects being uploaded (memory: about
    part_size x this)."""
    connect_timeout: float = 60
    """Seconds to open a connection (botocore's default)."""
    read_timeout: float = 60
    """Seconds of silence after which an answer is given up (botocore's default); on the fast path
    also the time after which an exchange must average `http11.Limits.min_rate`."""
    fast_path: bool = True
    """With a custom endpoint, send single-object GET/HEAD/PUT signed by awscrt over `http11` (`s3_http`;
    awscrt and httptools come with the `s3` extra): botocore's per-request CPU cost bounds small-object
    transfers. AWS itself always goes through botocore; without those two, or when a proxy applies to
    the endpoint (`HTTPS_PROXY`/`HTTP_PROXY` less `NO_PROXY`), so does everything."""

    def resolved_endpoint(self) -> str | None:
        return self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def shared_config(o: S3Options, url: str, endpoint: str | None) -> tuple[str | None, str | None, int, str | None]:
    """(region, ca_bundle, max_attempts) as botocore resolves them (the URL's options, the environment,
    then the profile's section of `~/.aws/config`; `us-east-1` for a custom `endpoint` with no region
    anywhere), and why the fast path must step aside (None: it honours everything set)."""
    import botocore.session

    with translated(url, ""):
        session = botocore.session.Session(profile=o.profile)
        region = o.region or os.environ.get("AWS_REGION") or session.get_config_variable("region")
        ca_bundle = session.get_config_variable("ca_bundle")
        attempts = session.get_config_variable("max_attempts")
        scoped = session.get_scoped_config()
    s3 = scoped.get("s3") if isinstance(scoped.get("s3"), dict) else {}
    settings = {**{f"s3.{k}": v for k, v in s3.items()}, **scoped}
    if o.addressing_style:
        settings["s3.addressing_style"] = o.addressing_style
    unhonoured = sorted(name for name, value in settings.items() if name in _UNHONOURED
                        and str(value).lower() in (_UNHONOURED[name] or {str(value).lower()}))
    aside = f"{', '.join(unhonoured)} set (in the URL or the AWS config)" if unhonoured else None
    return region or ("us-east-1" if endpoint else None), ca_bundle or None, int(attempts or ATTEMPTS), aside


def chain_credentials(fs: Any) -> Callable[[], Awaitable[Credentials]]:
    """The credentials of s3fs/aiobotocore's session `fs`, as the fast path asks for them."""
    chain: list[Any] = []

    async def from_chain() -> Credentials:  # the SDK's chain (env, profile, IMDS), refreshed as it expires
        from botocore.exceptions import NoCredentialsError

        if not chain:
            found = await fs.session.get_credentials()
            if found is None:
                raise NoCredentialsError()
            chain.append(found)
        frozen = await chain[0].get_frozen_credentials()
        return frozen.access_key, frozen.secret_key, frozen.token
    return from_chain


def static_credentials(o: S3Options) -> Credentials | None:
    """Keys given as options, or in the environment when no profile is asked for (botocore's chain
    looks at the environment first too); None when only the SDK's chain can tell."""
    if o.key and o.secret:
        return (o.key, o.secret, o.token)
    env = os.environ
    if o.profile is None and env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN") or None)
    return None
