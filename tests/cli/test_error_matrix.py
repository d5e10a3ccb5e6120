"""Every error path is one line naming the cause, with no credential in it: backend × credential slot × error.

A distinctive secret is planted in each credential slot (URL userinfo, URL query, environment) of
each backend, each command is run as a user would, and everything it prints — stdout, stderr, and
the traceback `--debug` adds — is searched for the secret.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_fscas

from fscas.conformance.emulators import free_port
from fscas.conformance.plugin import unique_bucket

SECRET = "PlantedS3cret9XZ"
B64_SECRET = base64.b64encode(SECRET.encode() * 4).decode()  # Azure keys are base64
DEAD = f"http://127.0.0.1:{free_port()}"


def _case(kind: str, slot: str, request: pytest.FixtureRequest) -> tuple[str, dict[str, str], str, int]:
    """(store URL, environment, the cause the message must name, exit code)."""
    sw = request.getfixturevalue("seaweedfs") if kind.startswith("seaweedfs") else None
    az = request.getfixturevalue("azurite") if kind.startswith("azurite") else None
    bucket = unique_bucket()
    cases: dict[tuple[str, str], tuple[str, dict[str, str], str, int]] = {
        ("s3-dead", "query"): (f"s3://b/p?endpoint_url={DEAD}&key=AKIAPLANTED&secret={SECRET}", {},
                               "endpoint unreachable", 1),
        ("s3-dead", "env"): (f"s3://b/p?endpoint_url={DEAD}", {"AWS_ACCESS_KEY_ID": "AKIAPLANTED",
                                                               "AWS_SECRET_ACCESS_KEY": SECRET},
                             "endpoint unreachable", 1),
        ("s3", "userinfo"): (f"s3://AKIAPLANTED:{SECRET}@b/p?endpoint_url={DEAD}", {},
                             "takes no credentials in the URL", 2),
        ("gs-dead", "query"): (f"gs://b/p?endpoint_url={DEAD}&token={SECRET}", {}, "endpoint unreachable", 1),
        ("gs", "userinfo"): (f"gs://user:{SECRET}@b/p", {}, "takes no credentials in the URL", 2),
        ("az-dead", "query"): (f"az://c/p?account_name=dev&account_key={B64_SECRET}&endpoint_url={DEAD}/dev", {},
                               "endpoint unreachable", 1),
        ("az-dead", "env"): ("az://c/p", {"AZURE_STORAGE_CONNECTION_STRING":
                                          f"DefaultEndpointsProtocol=http;AccountName=dev;AccountKey={B64_SECRET};"
                                          f"BlobEndpoint={DEAD}/dev;"}, "endpoint unreachable", 1),
        ("az-nokey", "query"): (f"az://c/p?account_name=dev&account_key={SECRET}!", {}, "not base64", 2),
        ("az", "none"): ("az://c/p", {}, "no Azure storage account", 2),
        ("sftp-dead", "userinfo"): (f"sftp://user:{SECRET}@127.0.0.1:{DEAD.rsplit(':', 1)[1]}/p", {},
                                    "endpoint unreachable", 1),  # the generic fsspec backend
    }
    if sw is not None:
        sw.create_bucket(bucket)
        url = sw.store_url(bucket, "p")
        cases |= {
            ("seaweedfs-badkey", "query"): (f"{url}&key={sw.access_key}&secret={SECRET}", {}, "credentials refused", 1),
            ("seaweedfs-badkey", "env"): (url, {"AWS_ACCESS_KEY_ID": sw.access_key, "AWS_SECRET_ACCESS_KEY": SECRET},
                                          "credentials refused", 1),
            ("seaweedfs-nobucket", "env"): (sw.store_url("fscas-missing-" + bucket[-12:]), {**sw.env()},
                                            "bucket does not exist", 1),
        }
    if az is not None:
        az.create_bucket(bucket)
        cs = az.connection_string.replace(az.connection_string.split("AccountKey=")[1].split(";")[0], B64_SECRET)
        cases |= {
            ("azurite-badkey", "query"): (f"az://{bucket}/p?account_name=devstoreaccount1&account_key={B64_SECRET}"
                                          f"&endpoint_url={az.endpoint}/devstoreaccount1", {}, "credentials refused", 1),
            ("azurite-badkey", "env"): (f"az://{bucket}/p", {"AZURE_STORAGE_CONNECTION_STRING": cs},
                                        "credentials refused", 1),
            ("azurite-nocontainer", "env"): ("az://fscas-missing-container/p", {**az.env()},
                                             "container does not exist", 1),
        }
    return cases[(kind, slot)]


CASES = [("s3-dead", "query"), ("s3-dead", "env"), ("s3", "userinfo"), ("gs-dead", "query"), ("gs", "userinfo"),
         ("az-dead", "query"), ("az-dead", "env"), ("az-nokey", "query"), ("az", "none"),
         ("sftp-dead", "userinfo"),
         ("seaweedfs-badkey", "query"), ("seaweedfs-badkey", "env"), ("seaweedfs-nobucket", "env"),
         ("azurite-badkey", "query"), ("azurite-badkey", "env"), ("azurite-nocontainer", "env")]


@pytest.mark.parametrize("kind, slot", CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_push_errors_name_the_cause_and_never_a_secret(kind: str, slot: str, request: pytest.FixtureRequest,
                                                       tmp_path: Path) -> None:
    url, env, cause, code = _case(kind, slot, request)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    for debug in ([], ["--debug"]):
        r = run_fscas("push", str(src), "--store", url, *debug, home=tmp_path, extra=env, timeout=120)
        printed = r.stdout + r.stderr
        assert SECRET not in printed and B64_SECRET not in printed, printed
        assert r.returncode == code, printed
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("fscas: error: ") and cause in last, printed
        assert ": : " not in last, f"an empty key slot in the message: {last}"
        if not debug:
            assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in printed, printed
        else:
            assert "Traceback" in printed


def test_pull_and_gc_errors_keep_secrets_out(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = f"s3://b/p?endpoint_url={DEAD}&key=AKIAPLANTED&secret={SECRET}"
    for args in (["pull", "Manifests/x", str(tmp_path / "d"), "--store", url], ["gc", "--store", url, "--json"],
                 ["verify", "--store", url, "--json"], ["attachment", "download", "-m", str(tmp_path / "m"), "-d",
                                                        str(tmp_path / "d"), "--store", url]):
        r = run_fscas(*args, home=tmp_path, timeout=120)
        assert SECRET not in r.stdout + r.stderr and r.returncode in (1, 2), (args, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.startswith("fscas: error: "), (args, r.stderr)


def test_an_unexpected_exception_is_one_redacted_line(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from fscas import cli

    def boom(args: Any) -> int:
        raise RuntimeError(f"deep inside an SDK: https://h/x?sig={SECRET}&token={SECRET} and AKIA/{SECRET}")

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda command=None: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv: _namespace(boom))
    assert cli.main(["gc"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fscas: internal error: RuntimeError: deep inside an SDK") and SECRET not in err
    assert "rerun with --debug" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("FSCAS_DEBUG", "1")
    assert cli.main(["gc"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and SECRET not in err


def _namespace(handler: Any) -> Any:
    import argparse

    return argparse.Namespace(handler=handler, debug=False)


@pytest.mark.parametrize("url, options", [
    (f"s3://b/p?endpoint_url={DEAD}", {"key": "AKIAPLANTED", "secret": SECRET, "token": SECRET + "tok"}),
    (f"gs://b/p?endpoint_url={DEAD}", {"token": SECRET}),
    ("az://c/p", {"account_name": "dev", "account_key": B64_SECRET, "endpoint_url": f"{DEAD}/dev"}),
    ("az://c/p", {"connection_string": f"AccountName=dev;AccountKey={B64_SECRET};BlobEndpoint={DEAD}/dev"}),
    ("az://c/p", {"account_name": "dev", "sas_token": f"sv=2020&sig={SECRET}", "endpoint_url": f"{DEAD}/dev"}),
])
def test_keyword_credentials_stay_out_of_reprs_and_errors(url: str, options: dict[str, str]) -> None:
    import traceback

    import fscas

    store = fscas.open_store(url, **options)
    shown = [repr(store), store.url, repr(store.aio.backend), repr(getattr(store.aio.backend, "options", ""))]
    with pytest.raises(fscas.StoreError) as caught:
        store.get_bytes("0" * 32)
    store.close()
    shown += [str(caught.value), "".join(traceback.format_exception(caught.value))]
    printed = "\n".join(shown)
    assert "unreachable" in str(caught.value)
    assert SECRET not in printed and B64_SECRET not in printed, printed
