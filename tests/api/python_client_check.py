"""Calls a live Warren gateway through the Python client generated from openapi/openapi.json.

    python python_client_check.py --client-dir DIR --document openapi/openapi.json --base-url URL

DIR holds the package that `openapi-python-client generate --meta none` wrote (scripts/api-checks.sh
does that). Checks, each printed on one line:
  - discovery: every /rpc operation of the committed document has a generated function, is served
    by the live gateway (its /openapi.json) and its service is listed by /services with an instance;
  - greeting_service.hello and kv put/get/inc/delete through the generated functions, results
    asserted (types and values), X-Request-Id echoed;
  - errors: kv.get of a missing key is a 404 problem+json parsed into the generated Problem model;
    an unknown keyword argument is a 400 (IncorrectSignature).
Exits 1 on the first failed assertion.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import uuid
from pathlib import Path


def ok(message: str) -> None:
    print(f"ok   {message}", flush=True)


def rpc_operations(document: dict) -> list[tuple[str, str, str, str]]:
    """(path, service, method, operationId) of every POST /rpc/{service}/{method} in the document."""
    found = []
    for path, item in sorted(document.get("paths", {}).items()):
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "rpc" and "post" in item:
            found.append((path, parts[2], parts[3], item["post"]["operationId"]))
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client-dir", required=True, type=Path)
    parser.add_argument("--document", required=True, type=Path)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--package", default="warren_gateway_client")
    args = parser.parse_args()

    sys.path.insert(0, str(args.client_dir))
    pkg = args.package
    client_mod = importlib.import_module(pkg)
    Client = client_mod.Client
    Problem = importlib.import_module(f"{pkg}.models.problem").Problem

    def api(tag: str, operation_id: str):
        return importlib.import_module(f"{pkg}.api.{tag}.{operation_id}")

    def model(name: str):
        module = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
        return getattr(importlib.import_module(f"{pkg}.models.{module}"), name)

    document = json.loads(args.document.read_text())
    client = Client(base_url=args.base_url, raise_on_unexpected_status=True, timeout=10.0)

    # --- discovery: the committed document, the generated client and the live gateway agree.
    operations = rpc_operations(document)
    services = sorted({service for _, service, _, _ in operations})
    expected = {"greeting_service", "kv", "library", "indexer"}
    assert expected <= set(services), f"bundled services missing from the document: {services}"
    for path, service, method, operation_id in operations:
        tag = document["paths"][path]["post"]["tags"][0]
        module = api(tag, operation_id)
        assert callable(module.sync_detailed), f"{operation_id}: no sync_detailed"
    ok(f"generated client has all {len(operations)} rpc operations of {len(services)} services: {', '.join(services)}")

    live = api("gateway", "gateway_openapi").sync(client=client)
    live_paths = set(live.to_dict()["paths"])
    missing = [path for path, *_ in operations if path not in live_paths]
    assert not missing, f"committed operations the live gateway does not serve: {missing}"
    ok(f"live /openapi.json serves every committed rpc operation ({len(live_paths)} paths live)")

    overview = api("gateway", "gateway_services").sync(client=client)
    listed = {entry.to_dict()["name"]: entry.to_dict() for entry in overview}
    for service in services:
        assert service in listed, f"/services does not list {service}: {sorted(listed)}"
        assert listed[service].get("instances"), f"/services: {service} has no live instance"
    for _, service, method, _ in operations:
        assert method in listed[service]["methods"], f"/services: {service} lacks {method}"
    ok(f"/services lists {', '.join(services)} with their methods and live instances")

    # --- greeting_service.hello
    hello = api("greeting_service", "greeting_service_hello")
    HelloBody = model("GreetingServiceHelloBody")
    request_id = f"api-check-{uuid.uuid4()}"
    response = hello.sync_detailed(client=client, body=HelloBody(name="Python"), x_request_id=request_id)
    assert response.status_code == 200, response
    assert response.parsed == "Hello, Python!", response.parsed
    assert response.headers.get("x-request-id") == request_id, response.headers
    ok(f"greeting_service.hello(name='Python') -> {response.parsed!r}, X-Request-Id echoed")

    # --- kv: put/get/inc/delete on keys of this run only
    run = uuid.uuid4().hex[:12]
    doc_key, counter_key = f"api-check-{run}-doc", f"api-check-{run}-n"
    value = {"a": [1, 2.5, None], "b": "x", "nested": {"ok": True}}
    kv = {name: api("kv", f"kv_{name}") for name in ("put", "get", "inc", "delete")}
    body = {name: model(f"Kv{name.capitalize()}Body") for name in kv}

    put = kv["put"].sync_detailed(client=client, body=body["put"](key=doc_key, value=value))
    assert put.status_code == 200 and put.parsed is None and put.content == b"null", put
    got = kv["get"].sync(client=client, body=body["get"](key=doc_key))
    assert got == value, got
    ok(f"kv.put then kv.get round-trips {json.dumps(value)}")

    first = kv["inc"].sync(client=client, body=body["inc"](key=counter_key))
    second = kv["inc"].sync(client=client, body=body["inc"](key=counter_key, by=41))
    third = kv["inc"].sync(client=client, body=body["inc"](key=counter_key, by=-2))
    assert (first, second, third) == (1, 42, 40), (first, second, third)
    assert all(type(n) is int for n in (first, second, third))
    assert kv["get"].sync(client=client, body=body["get"](key=counter_key)) == 40
    ok("kv.inc: 1, +41 -> 42, -2 -> 40 (ints); kv.get agrees")

    assert kv["delete"].sync(client=client, body=body["delete"](key=doc_key)) is True
    assert kv["delete"].sync(client=client, body=body["delete"](key=counter_key)) is True
    assert kv["delete"].sync(client=client, body=body["delete"](key=counter_key)) is False
    ok("kv.delete: True for existing keys, then False")

    # --- errors
    missing_key = f"api-check-{run}-missing"
    response = kv["get"].sync_detailed(client=client, body=body["get"](key=missing_key))
    assert response.status_code == 404, response
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    problem = response.parsed
    assert isinstance(problem, Problem), problem
    assert problem.status == 404 and problem.type_ == "urn:warren:problem:not-found", problem
    assert problem.exc_type == "NotFound" and problem.service == "kv" and problem.method == "get", problem
    assert missing_key in problem.detail, problem.detail
    assert problem.request_id == response.headers["x-request-id"], (problem.request_id, response.headers)
    ok(f"kv.get(missing) -> 404 problem+json: {problem.title}: {problem.detail}")

    # --- the e-library: a book added through library.add_book becomes findable by indexer.search
    book = {"title": f"Moby-Dick {run}", "author": "Herman Melville",
            "text": f"Call me Ishmael. The leviathan{run} rose from the sea."}
    added = api("library", "library_add_book").sync_detailed(
        client=client, body=model("LibraryAddBookBody")(**book))
    assert added.status_code == 200, added
    written = json.loads(added.content)
    fetched = api("library", "library_get_book").sync_detailed(
        client=client, body=model("LibraryGetBookBody")(id=written["id"]))
    assert fetched.status_code == 200, fetched
    assert json.loads(fetched.content)["title"] == book["title"], fetched.content
    search = api("indexer", "indexer_search")
    deadline = time.monotonic() + 10
    while True:
        found = search.sync_detailed(client=client, body=model("IndexerSearchBody")(query=f"leviathan{run}"))
        hits = json.loads(found.content).get("hits", []) if found.status_code == 200 else []
        if any(hit["id"] == written["id"] for hit in hits):
            break
        assert time.monotonic() < deadline, f"the book never became searchable: {found.content!r}"
        time.sleep(0.05)
    ok(f"library.add_book -> {written}; library.get_book agrees; indexer.search finds it")

    # An unknown keyword argument (the document says additionalProperties: false) is refused.
    raw = client.get_httpx_client().post("/rpc/greeting_service/hello", json={"name": "x", "extra": 1})
    assert raw.status_code == 400, (raw.status_code, raw.text)
    assert raw.json().get("exc_type") == "IncorrectSignature", raw.text
    ok("greeting_service.hello with an unknown argument -> 400 IncorrectSignature")
    return 0


if __name__ == "__main__":
    sys.exit(main())
