#!/usr/bin/env python
"""A real nameko 2.14 service, run in-process, for Warren interop tests.

Usage: nameko_service.py [SERVICE_NAME]      (default: nameko_echo)
Env:   AMQP_URI (default amqp://guest:guest@127.0.0.1:5672//)
       WARREN_EVENT_SOURCE  optional; adds the event handler `on_greeted`
                            (service_pool, `<source>.events` / "greeted";
                            queue `evt-<source>-greeted--<NAME>.on_greeted`)
                            and the RPC `received()` -> list of payloads
       WARREN_RPC_TARGET    optional; adds `RpcProxy(<target>)` as `warren`
                            and the RPCs `relay_stack()`, `relay_inc(key)`

Prints exactly one line, ``READY``, on stdout once the service's queues are
declared and consumed from.  Logs go to stderr.  Exits 0 on SIGTERM/SIGINT
after a graceful stop (in-flight workers finish first).
"""
import warnings

# eventlet >= 0.39 prints an EventletDeprecationWarning banner on import
warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

from nameko.contextdata import Language, UserAgent  # noqa: E402
from nameko.events import SERVICE_POOL, EventDispatcher, event_handler  # noqa: E402
from nameko.extensions import DependencyProvider  # noqa: E402
from nameko.rpc import RpcProxy, rpc  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672//"

# Payloads received by `on_greeted` (only with WARREN_EVENT_SOURCE).  All
# workers are greenlets in this one process; list.append is atomic for them.
RECEIVED = []


class NotFound(Exception):
    """Raised by `missing`; callers see exc_type == "NotFound"."""


class WorkerContext(DependencyProvider):
    """Injects the current nameko WorkerContext (2.x has no self.worker_ctx)."""

    def get_dependency(self, worker_ctx):
        return worker_ctx


class EchoService(object):
    name = "nameko_echo"  # build_service() subclasses with name = argv[1]

    worker_ctx = WorkerContext()
    dispatch = EventDispatcher()
    # nameko's own providers of `nameko.language` / `nameko.user_agent`.
    language = Language()
    user_agent = UserAgent()

    @rpc
    def echo(self, value):
        return value

    @rpc
    def add(self, a, b):
        return a + b

    @rpc
    def fail(self, message):
        raise ValueError(message)

    @rpc
    def missing(self, key):
        raise NotFound("no such key: {}".format(key))

    @rpc
    def context(self):
        ctx = self.worker_ctx
        # ctx.data holds the decoded `nameko.*` headers minus call_id_stack,
        # which WorkerContext pops into _parent_call_id_stack.
        data = dict(ctx.data)
        result = {
            # this worker's stack: the incoming stack + this call's id
            "call_id_stack": list(ctx.call_id_stack),
            # the stack exactly as received in the `nameko.call_id_stack` header
            "parent_call_id_stack": list(ctx._parent_call_id_stack or []),
            "data": data,
        }
        for key in ("user_id", "auth_token", "language", "user_agent"):
            if data.get(key) is not None:
                result[key] = data[key]
        # What nameko's Language and UserAgent dependency providers inject.
        result["providers"] = {"language": self.language, "user_agent": self.user_agent}
        return result

    @rpc
    def slow(self, ms):
        eventlet.sleep(ms / 1000.0)
        return ms

    @rpc
    def emit(self, event_type, payload):
        """Dispatch a nameko event from `<service>.events` (for event interop)."""
        self.dispatch(event_type, payload)
        return True


def build_service(service_name, event_source=None, rpc_target=None):
    """Return the service class: EchoService plus the optional extras.

    nameko finds dependencies and entrypoints by inspecting class attributes
    when the container is built, so the extras are set on a fresh subclass
    here (fresh functions too: entrypoint decorators register on the function
    object).  Without the env vars nothing is added, so no event queue is
    declared and no proxy is set up.
    """
    attrs = {"name": service_name}

    if event_source:

        def on_greeted(self, payload):
            RECEIVED.append(payload)

        def received(self):
            return list(RECEIVED)

        attrs["on_greeted"] = event_handler(
            event_source, "greeted", handler_type=SERVICE_POOL
        )(on_greeted)
        attrs["received"] = rpc(received)

    if rpc_target:

        def relay_stack(self):
            return {
                "warren_stack": self.warren.stack(),
                "own_stack": list(self.worker_ctx.call_id_stack),
            }

        def relay_inc(self, key):
            return self.warren.inc(key=key)

        attrs["warren"] = RpcProxy(rpc_target)
        attrs["relay_stack"] = rpc(relay_stack)
        attrs["relay_inc"] = rpc(relay_inc)

    return type("EchoService", (EchoService,), attrs)


def main():
    service_name = sys.argv[1] if len(sys.argv) > 1 else "nameko_echo"
    service_cls = build_service(
        service_name,
        event_source=os.environ.get("WARREN_EVENT_SOURCE") or None,
        rpc_target=os.environ.get("WARREN_RPC_TARGET") or None,
    )

    configure_logging()

    config = {
        "AMQP_URI": os.environ.get("AMQP_URI", DEFAULT_AMQP_URI),
        "max_workers": 10,
    }

    runner = ServiceRunner(config)
    runner.add_service(service_cls)

    # ServiceContainer.start() returns once every entrypoint has started; the
    # QueueConsumer blocks there until basic.consume is confirmed for all
    # queues, so at this point the service can receive requests.
    return serve_until_signal(runner, "READY")


def configure_logging():
    """Logs on stderr at $NAMEKO_LOG_LEVEL (default WARNING)."""
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("NAMEKO_LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def serve_until_signal(runner, ready_line):
    """Start `runner`, print `ready_line`, and run until SIGTERM/SIGINT; 0."""

    def shutdown(signum, frame):
        # Signal handlers run on the main loop and must not block on eventlet
        # primitives; stop from a fresh greenlet (same as `nameko run`).
        eventlet.spawn_n(runner.stop)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)

    runner.start()
    sys.stdout.write(ready_line + "\n")
    sys.stdout.flush()

    runnlet = eventlet.spawn(runner.wait)
    while True:
        try:
            runnlet.wait()
        except OSError as exc:  # EINTR from the signal; keep waiting
            import errno

            if exc.errno == errno.EINTR:
                continue
            raise
        else:
            break
    return 0

if __name__ == "__main__":
    sys.exit(main())
