"""Small real servers for the generic fsspec backend's tests: SFTP (asyncssh), WebDAV (wsgidav on
cheroot) and FTP (pyftpdlib), each serving one folder on 127.0.0.1 with a user and a password.

    python -m fscas.conformance.servers sftp|webdav|ftp --port N --root DIR --user U --password P

`fscas.conformance.emulators` starts them as subprocesses, like the cloud emulators.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

__all__ = ["main"]


def _sftp(args: argparse.Namespace) -> None:
    import asyncssh

    key_path = Path(args.root).parent / "ssh_host_key"
    if not key_path.exists():  # the emulator writes the public half to known_hosts for its clients
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(key_path))
        key.write_public_key(str(key_path) + ".pub")

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            return bool(username == args.user and password == args.password)

    async def serve() -> None:
        await asyncssh.listen("127.0.0.1", args.port, server_host_keys=[str(key_path)], server_factory=Server,
                              sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=args.root.encode()),
                              allow_scp=False)
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


def _webdav(args: argparse.Namespace) -> None:
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    app = WsgiDAVApp({
        "host": "127.0.0.1", "port": args.port, "provider_mapping": {"/": args.root},
        "http_authenticator": {"domain_controller": None, "accept_basic": True, "accept_digest": False,
                               "default_to_digest": False},
        "simple_dc": {"user_mapping": {"*": {args.user: {"password": args.password}}}},
        "verbose": 1, "logging": {"enable_loggers": []}, "property_manager": None, "lock_storage": None,
    })
    server = wsgi.Server(("127.0.0.1", args.port), app, numthreads=16)
    print("ready", flush=True)
    server.start()


def _ftp(args: argparse.Namespace) -> None:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer

    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.root, perm="elradfmwMT")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "passive_ports": None,
                                              "masquerade_address": None, "banner": "fscas test FTP"})
    server = ThreadedFTPServer(("127.0.0.1", args.port), handler)
    print("ready", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fscas.conformance.servers")
    parser.add_argument("kind", choices=["sftp", "webdav", "ftp"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args(argv)
    {"sftp": _sftp, "webdav": _webdav, "ftp": _ftp}[args.kind](args)


if __name__ == "__main__":
    main()
