#!/usr/bin/env python
"""nameko's own HTTP gateway in front of Warren's greeter, for `warren bench --with-nameko`.

Usage: http_gateway.py PORT
Env:   AMQP_URI (default amqp://guest:guest@127.0.0.1:5672//),
       NAMEKO_MAX_WORKERS (default 10, nameko's default), NAMEKO_LOG_LEVEL (default WARNING)

A nameko 2.14 service with one `@http` entrypoint, `POST /rpc/greeting_service/hello`, whose
JSON body (keyword arguments) goes to `greeting_service.hello` through an `RpcProxy`; the
result comes back as JSON. Prints `READY http://127.0.0.1:PORT` on stdout once serving;
SIGTERM/SIGINT stop it.
"""
import warnings

# eventlet >= 0.39 prints an EventletDeprecationWarning banner on import
warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from nameko.rpc import RpcProxy  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402
from nameko.web.handlers import http  # noqa: E402
from nameko_service import configure_logging, serve_until_signal  # noqa: E402

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672//"


class HttpGateway:
    name = "warren_bench_nameko_http"

    greeter = RpcProxy("greeting_service")

    @http("POST", "/rpc/greeting_service/hello")
    def hello(self, request):
        kwargs = json.loads(request.get_data(as_text=True) or "{}")
        result = self.greeter.hello(**kwargs)
        return 200, {"Content-Type": "application/json"}, json.dumps(result)


def main():
    port = int(sys.argv[1])
    configure_logging()
    config = {
        "AMQP_URI": os.environ.get("AMQP_URI", DEFAULT_AMQP_URI),
        "WEB_SERVER_ADDRESS": "127.0.0.1:{}".format(port),
        "max_workers": int(os.environ.get("NAMEKO_MAX_WORKERS", "10")),
    }
    runner = ServiceRunner(config)
    runner.add_service(HttpGateway)
    return serve_until_signal(runner, "READY http://127.0.0.1:{}".format(port))

if __name__ == "__main__":
    sys.exit(main())
