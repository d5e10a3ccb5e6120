"""Who an Azure store's requests are from, and how the fast path signs them without the SDK.

A pull spent a third of its start-up importing azure-storage-blob (0.3 s cold) only to reach its
shared-key policy. So the fast path's service URL comes from the options here, by the SDK's own
rules, and a request for a blob is authorized by a service SAS for that blob from obstore's signer
(Rust's `object_store`: imported in milliseconds), never by HMAC code of ours. The SDK's policy is
still used (`SharedKey`):
- for a blob name that needs percent-encoding: object_store signs the encoded name, which the
  service refuses (measured on Azurite: `a b`, `é`, `a%b`, `a#b` answer 403);
- after any 403 to a SAS request: a SAS's start time gets no leeway for a clock ahead of the
  service's, where a shared-key date gets 15 minutes;
- once a store has sent `SharedKey.AFTER` requests: Azurite spends 0.1-0.2 ms more CPU checking a
  SAS than a shared key (0.51-0.72 against 0.41-0.48 ms a GET, 3,000 GETs), so a bulk transfer
  loads the SDK's policy on a thread, behind its first requests, and signs the rest with it.
"""

from __future__ import annotations

import base64
import datetime
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import attrs

from fscas.errors import ConfigError

if TYPE_CHECKING:
    from fscas.backends.azure import AzureOptions

__all__ = [
    "API_VERSION",
    "BlobSas",
    "Credential",
    "SharedKey",
    "account_key",
    "connection_fields",
    "resolve",
    "service_url",
]

API_VERSION = "2026-02-06"
"""The `x-ms-version` of the fast path's requests: one azure-storage-blob 12.31 supports and Azurite
3.37 accepts without `--skipApiVersionCheck`."""


def connection_fields(connection_string: str | None) -> dict[str, str]:
    """The fields of a connection string (the option's, else AZURE_STORAGE_CONNECTION_STRING's),
    names upper-cased: the SDK reads them case-insensitively."""
    cs = connection_string or os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "")
    return {k.upper(): v for k, _, v in (p.partition("=") for p in cs.split(";")) if _}


def account_key(option: str | None) -> str | None:
    """The account key: the option's, else AZURE_STORAGE_ACCOUNT_KEY's or AZURE_STORAGE_KEY's."""
    env = os.environ
    return option or env.get("AZURE_STORAGE_ACCOUNT_KEY") or env.get("AZURE_STORAGE_KEY")


@attrs.frozen
class Credential:
    """Which credential a store uses, resolved once from its options and the environment; the SDK's
    client and the fast path both read it, so the two cannot disagree."""

    kind: Literal["connection_string", "account_key", "sas_token", "anon", "chain"]
    url: str
    """The blob service URL from `endpoint_url` or the account (a connection string carries its own)."""
    account: str | None = None
    key: str | None = attrs.field(default=None, repr=False)
    """The account key (a connection string's own, for that kind)."""
    sas: str = attrs.field(default="", repr=False)
    """The SAS token's query, without its `?`."""
    connection_string: str = attrs.field(default="", repr=False)


def resolve(url: str, options: AzureOptions, account: str | None) -> Credential:
    """The store's `Credential`; a configuration that cannot work is refused here.

    Raises:
        ConfigError: no account at all, or an account key that is not base64.
    """
    env = os.environ
    base = options.endpoint_url or f"https://{account}.blob.core.windows.net"
    connection_string = options.connection_string or env.get("AZURE_STORAGE_CONNECTION_STRING")
    fields = connection_fields(connection_string) if connection_string else {}
    key = fields.get("ACCOUNTKEY") if connection_string else account_key(options.account_key)
    if key is not None:
        try:
            base64.b64decode(key, validate=True)
        except ValueError:
            raise ConfigError(f"{url}: the account key is not base64 (an Azure storage key is "
                              "88 base64 characters)") from None
    if connection_string:  # its own account name signs, as the SDK's client does
        return Credential("connection_string", base, fields.get("ACCOUNTNAME"), key,
                          connection_string=connection_string)
    if not account:
        raise ConfigError(f"{url}: no Azure storage account: give account_name (env "
                          "AZURE_STORAGE_ACCOUNT_NAME) with account_key, sas_token or anon=true, or a "
                          "connection_string (env AZURE_STORAGE_CONNECTION_STRING)")
    if key:
        return Credential("account_key", base, account, key)
    if sas := options.sas_token or env.get("AZURE_STORAGE_SAS_TOKEN"):
        return Credential("sas_token", base, account, sas=sas.lstrip("?"))
    if options.anon or env.get("AZURE_STORAGE_ANON", "").lower() in ("1", "true"):
        return Credential("anon", base, account)
    return Credential("chain", base, account)


def service_url(connection_string: str) -> str | None:
    """The blob service URL of a connection string with an account key, by the SDK's rule
    (`parse_connection_str`); None for the forms left to the SDK (development storage, a SAS, no
    key, a malformed string: the SDK reports it)."""
    if any("=" not in p for p in connection_string.rstrip(";").split(";")):
        return None
    fields = connection_fields(connection_string)
    if fields.get("USEDEVELOPMENTSTORAGE") or "SHAREDACCESSSIGNATURE" in fields or not fields.get("ACCOUNTKEY"):
        return None
    if "ACCOUNTNAME" not in fields:
        return None
    if url := fields.get("BLOBENDPOINT"):
        return url
    protocol = fields.get("DEFAULTENDPOINTSPROTOCOL") if "ENDPOINTSUFFIX" in fields else None
    suffix = fields.get("ENDPOINTSUFFIX", "core.windows.net")
    return f"{protocol or 'https'}://{fields['ACCOUNTNAME']}.blob.{suffix}"


class BlobSas:
    """Per-blob service SAS queries from obstore's signer, for a key-holding account.

    `query` answers None where the SAS would not be the one the service checks (the caller signs
    that request with the shared key instead).
    """

    def __init__(self, store: Any, origin: str) -> None:
        self._store, self._origin = store, origin

    @classmethod
    def make(cls, account: str, key: str, url: str, container: str) -> BlobSas | None:
        """None when obstore is not installed (the SDK's policy signs every request)."""
        try:
            from obstore.store import AzureStore
        except ImportError:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        endpoint = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        try:
            store = AzureStore(container, account_name=account, access_key=key, endpoint=endpoint,
                               client_options={"allow_http": True})
        except Exception:  # an option obstore parses more strictly than the SDK: the shared key signs
            return None
        return cls(store, f"{parts.scheme}://{parts.netloc}")

    def query(self, method: str, path: str, blob: str) -> str | None:
        """The SAS query (`sv=...&sig=...`) letting `method` (HEAD as GET) reach the blob at URL
        `path`, or None when `path` is percent-encoded or obstore's URL for `blob` is not `path`."""
        if "%" in path:  # object_store would sign the encoded name: the service checks the decoded one
            return None
        import obstore

        verb: Literal["GET", "PUT", "DELETE"] = "PUT" if method == "PUT" else "DELETE" if method == "DELETE" else "GET"
        try:
            url = obstore.sign(self._store, verb, blob, datetime.timedelta(hours=1))
        except Exception:  # a name obstore's paths refuse (`a//b`): the shared key signs it
            return None
        signed_url, _, query = url.partition("?")
        return query if signed_url == self._origin + path and query else None


class SharedKey:
    """The SDK's `SharedKeyCredentialPolicy` for an account, loaded when first needed (`now`) or,
    once `AFTER` requests have asked for it (`ready`), on a thread of its own.

    Args:
        make: builds the policy (importing azure-storage-blob: 0.3 s cold).
    """

    AFTER = 64
    """Requests after which the policy is loaded behind the transfer: a command moving fewer
    objects never imports the SDK."""

    def __init__(self, make: Callable[[], Any], *, after: int = AFTER) -> None:
        self._make, self._left = make, after
        self._policy: Any = None
        self._error: BaseException | None = None
        self._started = False
        self._done = threading.Event()

    @classmethod
    def held(cls, policy: Any) -> SharedKey:
        """One around a policy already made (the SDK client's own)."""
        key = cls(lambda: policy)
        key.now()
        return key

    def _load(self) -> None:
        try:
            self._policy = self._make()
        except BaseException as e:  # kept for `now`, which raises it where a request needs it
            self._error = e
        finally:
            self._done.set()

    def ready(self) -> Any:
        """The policy if it is loaded, else None; the request that reaches `AFTER` starts loading it."""
        if not self._started:
            self._left -= 1
            if self._left <= 0:
                self._started = True
                threading.Thread(target=self._load, name="fscas-azure-sdk").start()
        return self._policy

    def now(self) -> Any:
        """The policy, loaded here unless a thread is at it (the caller waits either way)."""
        if not self._started:
            self._started = True
            self._load()
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._policy

    def close(self) -> None:
        """Wait for a load in progress: a process never exits in the middle of an import."""
        if self._started:
            self._done.wait()
