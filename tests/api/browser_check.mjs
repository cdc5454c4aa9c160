// Browser checks against a live Warren gateway, in headless Debian Chromium driven by playwright-core.
//
//   GATEWAY_URL=http://127.0.0.1:G ALLOWED_ORIGIN_PORT=A WARREN_NODE_DIR=DIR OUT_DIR=DIR \
//     node tests/api/browser_check.mjs
//
// The gateway must run with `--cors-origin http://127.0.0.1:A`. This script serves one small page
// on that origin and the same page on a second, not allowed, origin (127.0.0.1, another port). The
// page calls `POST <gateway>/rpc/greeting_service/hello` and `.../kv/inc` with fetch and a JSON
// body (so the browser sends a CORS preflight first) and writes what it got into the page.
// Checks, each printed on one line:
//   - the preflight answer names the allowed origin and allows content-type, and not the other;
//   - allowed origin: the page shows `Hello, Browser!`, reads X-Request-Id (exposed header), and
//     its kv.inc happened;
//   - other origin: the page cannot read the answer (TypeError, CORS error in the console) and
//     its kv.inc never reached the service (the preflight stopped it);
//   - <gateway>/docs/: Swagger UI renders an operation for every /rpc path of the live document,
//     and "Try it out" on greeting_service.hello executes and shows the answer; screenshots in OUT_DIR;
//   - no request from the browser left 127.0.0.1.
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { CHROMIUM_ARGS } from "./chromium.mjs";
import { join } from "node:path";
import { randomUUID } from "node:crypto";

const gateway = need("GATEWAY_URL").replace(/\/$/, "");
const allowedPort = Number(need("ALLOWED_ORIGIN_PORT"));
const nodeDir = need("WARREN_NODE_DIR");
const outDir = need("OUT_DIR");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const { chromium } = createRequire(join(nodeDir, "package.json"))("playwright-core");


const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Warren CORS check</title></head>
<body>
<h1>Warren from another origin</h1>
<p>answer: <output id="answer"></output></p>
<p>X-Request-Id: <output id="request-id"></output></p>
<p>kv.inc: <output id="counter"></output></p>
<p>errors: <output id="error"></output></p>
<script type="module">
const query = new URLSearchParams(location.search);
const gateway = query.get("gw");
const show = (id, text) => { document.getElementById(id).textContent += text; };
function rpc(path, args) {
  return fetch(gateway + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(args),
  });
}
try {
  const response = await rpc("/rpc/greeting_service/hello", { name: "Browser" });
  show("request-id", response.headers.get("x-request-id") ?? "");
  show("answer", await response.json());
} catch (e) { show("error", "hello: " + e + "; "); }
try {
  const response = await rpc("/rpc/kv/inc", { key: query.get("key") });
  show("counter", JSON.stringify(await response.json()));
} catch (e) { show("error", "inc: " + e + "; "); }
document.body.dataset.done = "yes";
</script>
</body></html>`;

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function ok(message) {
  console.log(`ok   ${message}`);
}

function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

function serve(port) {
  const server = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
    res.end(PAGE);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

async function rpc(path, args) {
  const response = await fetch(gateway + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(args),
  });
  return { status: response.status, body: await response.json() };
}

async function preflight(origin) {
  const response = await fetch(gateway + "/rpc/greeting_service/hello", {
    method: "OPTIONS",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type",
    },
  });
  return response.headers;
}

const servers = [];
let browser;
let page;
try {
  const allowedServer = await serve(allowedPort);
  const otherServer = await serve(0);
  servers.push(allowedServer, otherServer);
  const allowed = `http://127.0.0.1:${allowedPort}`;
  const other = `http://127.0.0.1:${otherServer.address().port}`;

  // The preflight itself, as the browser will send it.
  const yes = await preflight(allowed);
  assert(yes.get("access-control-allow-origin") === allowed, `preflight from ${allowed}: ${[...yes]}`);
  assert(/content-type/i.test(yes.get("access-control-allow-headers") ?? ""), `allow-headers: ${[...yes]}`);
  assert(/POST/.test(yes.get("access-control-allow-methods") ?? ""), `allow-methods: ${[...yes]}`);
  const no = await preflight(other);
  assert(!no.has("access-control-allow-origin"), `preflight from ${other} allowed: ${[...no]}`);
  ok(`preflight: ${allowed} allowed (content-type, POST), ${other} not`);

  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    chromiumSandbox: false,
    args: CHROMIUM_ARGS,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const offMachine = [];
  context.on("request", (request) => {
    const host = new URL(request.url()).hostname;
    if (!["127.0.0.1", "localhost", "[::1]"].includes(host) && !request.url().startsWith("data:")) {
      offMachine.push(request.url());
    }
  });
  page = await context.newPage();
  const consoleLines = [];
  page.on("console", (message) => consoleLines.push(`${message.type()}: ${message.text()}`));

  async function openCallerPage(origin) {
    const key = `browser-check-${randomUUID()}`;
    const url = `${origin}/?gw=${encodeURIComponent(gateway)}&key=${encodeURIComponent(key)}`;
    await page.goto(url);
    await page.waitForSelector("body[data-done=yes]", { timeout: 15000 });
    const text = async (id) => (await page.locator(`#${id}`).textContent()) ?? "";
    return {
      key,
      answer: await text("answer"),
      requestId: await text("request-id"),
      counter: await text("counter"),
      error: await text("error"),
    };
  }

  // Allowed origin: the answer arrives and is shown.
  const good = await openCallerPage(allowed);
  assert(good.error === "", `errors on the allowed page: ${good.error}`);
  assert(good.answer === "Hello, Browser!", `allowed page shows ${JSON.stringify(good.answer)}`);
  assert(good.requestId.length > 0, "X-Request-Id not readable from the page (expose-headers)");
  assert(good.counter === "1", `kv.inc from the allowed page answered ${good.counter}`);
  const stored = await rpc("/rpc/kv/get", { key: good.key });
  assert(stored.status === 200 && stored.body === 1, `kv.get after the allowed page: ${JSON.stringify(stored)}`);
  await page.screenshot({ path: join(outDir, "cors-allowed.png") });
  ok(`${allowed} page shows "${good.answer}" (X-Request-Id ${good.requestId}), its kv.inc ran`);

  // Another origin: the browser refuses to hand over the answer, and the preflight keeps the call
  // from ever reaching the service.
  consoleLines.length = 0;
  const bad = await openCallerPage(other);
  assert(bad.answer === "", `the page from ${other} read the answer: ${bad.answer}`);
  assert(bad.counter === "", `the page from ${other} read kv.inc: ${bad.counter}`);
  assert(/hello: TypeError/.test(bad.error) && /inc: TypeError/.test(bad.error), `errors: ${bad.error}`);
  assert(
    consoleLines.some((line) => /blocked by CORS policy/.test(line)),
    `no CORS error in the console: ${consoleLines.join(" | ")}`,
  );
  const untouched = await rpc("/rpc/kv/get", { key: bad.key });
  assert(untouched.status === 404, `kv.inc from the other origin reached kv: ${JSON.stringify(untouched)}`);
  ok(`${other} page cannot read the answer (${bad.error.split(";")[0]}), its kv.inc never ran`);

  // Swagger UI at /docs/.
  const live = await (await fetch(gateway + "/openapi.json")).json();
  const rpcPaths = Object.keys(live.paths).filter((path) => path.startsWith("/rpc/"));
  assert(rpcPaths.includes("/rpc/greeting_service/hello") && rpcPaths.includes("/rpc/kv/get"), `${rpcPaths}`);
  await page.goto(`${gateway}/docs/`);
  await page.waitForSelector(".opblock-summary-path", { timeout: 20000 });
  for (const path of rpcPaths) {
    const count = await page.locator(`.opblock-summary-path[data-path="${path}"]`).count();
    assert(count === 1, `Swagger UI shows ${count} operations for ${path}`);
  }
  await page.screenshot({ path: join(outDir, "swagger-ui.png") });
  ok(`Swagger UI at /docs/ renders all ${rpcPaths.length} rpc operations of the live document`);

  const hello = page.locator("#operations-greeting_service-greeting_service_hello");
  await hello.locator(".opblock-summary").first().click();
  await hello.locator("button.try-out__btn").click();
  await hello.locator("textarea.body-param__text").fill('{"name": "Swagger"}');
  await hello.locator("button.execute").click();
  const liveResponse = hello.locator(".live-responses-table .response");
  await liveResponse.locator(".response-col_status").filter({ hasText: "200" }).waitFor({ timeout: 15000 });
  const shown = await liveResponse.locator(".response-col_description").textContent();
  assert(/Hello, Swagger!/.test(shown ?? ""), `Swagger UI response: ${shown}`);
  await page.screenshot({ path: join(outDir, "swagger-ui-try-it-out.png"), fullPage: true });
  ok(`Swagger UI "Try it out" on greeting_service.hello shows 200 "Hello, Swagger!" (screenshots in ${outDir})`);

  assert(offMachine.length === 0, `the browser asked for off-machine URLs: ${offMachine.join(", ")}`);
  ok("no browser request left 127.0.0.1");
} catch (error) {
  if (page) await page.screenshot({ path: join(outDir, "browser-failure.png"), fullPage: true }).catch(() => {});
  console.error(error);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  for (const server of servers) server.close();
}
