#!/usr/bin/env python
"""Call Warren (Rust) services from a real nameko 2.14 ClusterRpcProxy.

Usage: call_warren.py --greeter NAME --kv NAME
Env:   AMQP_URI (default amqp://guest:guest@127.0.0.1:5672//)

Prints one line per check, ``ok <check>`` or ``FAIL <check>: <detail>``,
then a summary line ``N passed, N failed``.  Exit status 1 if any check
failed (2 if the proxy could not even start).
"""
import warnings

# eventlet >= 0.39 prints an EventletDeprecationWarning banner on import
warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402

from nameko.exceptions import (  # noqa: E402
    IncorrectSignature, MethodNotFound, RemoteError, UnknownService
)
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672//"
TIMEOUT = 10


class CheckFailed(Exception):
    pass


def expect_equal(got, want):
    if got != want:
        raise CheckFailed("expected {!r}, got {!r}".format(want, got))


def expect_raises(exc_cls, fn, *args, **kwargs):
    try:
        result = fn(*args, **kwargs)
    except exc_cls as exc:
        return exc
    raise CheckFailed(
        "expected {} but call returned {!r}".format(exc_cls.__name__, result)
    )


def describe(exc):
    if isinstance(exc, RemoteError):
        return "RemoteError(exc_type={!r}, value={!r})".format(
            exc.exc_type, exc.value)
    return "{}: {}".format(type(exc).__name__, exc)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--greeter", required=True, help="greeter service name")
    parser.add_argument("--kv", required=True, help="kv service name")
    args = parser.parse_args(argv)

    config = {"AMQP_URI": os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)}
    results = []

    def check(name, fn):
        try:
            fn()
        except CheckFailed as exc:
            results.append(False)
            print("FAIL {}: {}".format(name, exc), flush=True)
        except Exception as exc:  # RpcTimeout, RemoteError, socket errors...
            results.append(False)
            print("FAIL {}: unexpected {}".format(name, describe(exc)),
                  flush=True)
        else:
            results.append(True)
            print("ok {}".format(name), flush=True)

    try:
        cluster = ClusterRpcProxy(config, timeout=TIMEOUT)
        proxy = cluster.start()
    except Exception as exc:
        print("FAIL proxy_start: {}".format(describe(exc)), flush=True)
        return 2

    try:
        greeter = proxy[args.greeter]
        kv = proxy[args.kv]

        check("hello_kwargs",
              lambda: expect_equal(greeter.hello(name="Nameko"),
                                   "Hello, Nameko!"))
        check("hello_positional",
              lambda: expect_equal(greeter.hello("Py"), "Hello, Py!"))

        key = "interop-{}".format(uuid.uuid4().hex)

        def inc_sequence():
            got = [kv.inc(key=key, by=1) for _ in range(50)]
            expect_equal(got, list(range(1, 51)))

        check("kv_inc_sequence", inc_sequence)
        check("kv_inc_default_by",
              lambda: expect_equal(kv.inc(key), 51))
        check("kv_get", lambda: expect_equal(kv.get(key=key), 51))

        def get_missing():
            missing_key = "definitely-missing-{}".format(uuid.uuid4().hex)
            exc = expect_raises(RemoteError, kv.get, key=missing_key)
            expect_equal(exc.exc_type, "NotFound")

        check("kv_get_missing_not_found", get_missing)

        check("method_not_found",
              lambda: expect_raises(MethodNotFound, greeter.no_such_method))
        check("incorrect_signature",
              lambda: expect_raises(IncorrectSignature, greeter.hello,
                                    wrong_kw=1))

        def unknown_service():
            name = "no_such_service_{}".format(uuid.uuid4().hex)
            # nameko publishes requests with mandatory=True on a confirm
            # channel; the broker's basic.return(312 NO_ROUTE) surfaces as
            # UnknownService raised synchronously from the call.
            exc = expect_raises(UnknownService, proxy[name].x)
            expect_equal(exc._service_name, name)

        check("unknown_service", unknown_service)
    finally:
        try:
            cluster.stop()
        except Exception:
            pass

    passed = sum(1 for r in results if r)
    failed = len(results) - passed
    print("{} passed, {} failed".format(passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
