// A real browser follows the mesh's events: headless Debian Chromium (playwright-core) opens an
// `EventSource` on a `warren gateway` over RabbitMQ, from another origin, and receives an event
// dispatched with `warren dispatch`.
//
//   WARREN_BIN=.../warren WARREN_NODE_DIR=DIR [AMQP_URL=...] [CHROMIUM=...] \
//     node tests/api/event_stream_check.mjs
//
// Checks, each printed on one line:
//   - the page's EventSource opens (the gateway sends the headers once its queue is bound), on
//     an allowed origin (CORS);
//   - an event dispatched after that, by another process (`warren dispatch`), reaches the page
//     with its type, its JSON data and its id (`lastEventId`);
//   - the gateway stops on SIGTERM within 10 s while the stream is open (streams end at shutdown),
//     and the page sees its EventSource lose the connection.
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { CHROMIUM_ARGS } from "./chromium.mjs";
import { join } from "node:path";
import { spawn, execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";

const bin = need("WARREN_BIN");
const nodeDir = need("WARREN_NODE_DIR");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const { chromium } = createRequire(join(nodeDir, "package.json"))("playwright-core");

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Warren events</title></head>
<body>
<p>state: <output id="state"></output></p>
<p>event: <output id="event"></output></p>
<script>
const query = new URLSearchParams(location.search);
const source = new EventSource(query.get("gw") + "/events/" + query.get("src") + "/book_added");
const show = (id, text) => { document.getElementById(id).textContent = text; };
source.onopen = () => { show("state", "open"); document.body.dataset.open = "yes"; };
source.onerror = () => { if (document.body.dataset.open) { show("state", "lost"); document.body.dataset.lost = "yes"; } };
source.addEventListener("book_added", (e) => {
  show("event", JSON.stringify({ type: e.type, data: JSON.parse(e.data), id: e.lastEventId }));
  document.body.dataset.event = "yes";
});
</script>
</body></html>`;

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

let failures = 0;
function check(ok, what, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}${detail ? ` (${detail})` : ""}`);
  if (!ok) failures += 1;
}

async function until(what, limitMs, probe) {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// The page's origin: a port of its own on 127.0.0.1.
const site = createServer((_, res) => { res.writeHead(200, { "content-type": "text/html" }); res.end(PAGE); });
await new Promise((r) => site.listen(0, "127.0.0.1", r));
const origin = `http://127.0.0.1:${site.address().port}`;

// The gateway over RabbitMQ, allowing that origin.
const gateway = spawn(bin, ["gateway", "--listen", "127.0.0.1:0", "--cors-origin", origin], {
  stdio: ["ignore", "pipe", "inherit"],
  env: { PATH: process.env.PATH, HOME: process.env.HOME, AMQP_URL: process.env.AMQP_URL || "amqp://guest:guest@127.0.0.1:5672/%2f", RUST_LOG: "warn" },
});
let firstLine = "";
gateway.stdout.on("data", (chunk) => { firstLine += chunk; });
const exited = new Promise((r) => gateway.on("exit", (code, signal) => r({ code, signal })));
const gw = await until("the gateway's address line", 30000, () => firstLine.match(/gateway on (http:\/\/\S+) over/)?.[1]);
await until("/readyz", 30000, async () => (await fetch(gw + "/readyz").catch(() => null))?.status === 200);

const src = `t_sse_${randomUUID().slice(0, 8)}`;
const browser = await chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
try {
  const page = await browser.newPage();
  await page.goto(`${origin}/?gw=${encodeURIComponent(gw)}&src=${src}`);
  await page.waitForSelector("body[data-open]", { timeout: 15000 });
  check(true, "EventSource open from another (allowed) origin");

  execFileSync(bin, ["dispatch", src, "book_added", '{"title":"Dune","year":1965}'], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, RUST_LOG: "warn", AMQP_URL: process.env.AMQP_URL || "amqp://guest:guest@127.0.0.1:5672/%2f" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  await page.waitForSelector("body[data-event]", { timeout: 15000 });
  const got = JSON.parse(await page.textContent("#event"));
  const want = { type: "book_added", data: { title: "Dune", year: 1965 }, id: "1" };
  check(JSON.stringify(got) === JSON.stringify(want), "the page received the event `warren dispatch` sent", JSON.stringify(got));

  const stopping = Date.now();
  gateway.kill("SIGTERM");
  const timer = new Promise((r) => setTimeout(() => r(null), 10000));
  const exit = await Promise.race([exited, timer]);
  check(exit !== null && exit.code === 0, "the gateway stops on SIGTERM with a stream open", exit ? `exit ${exit.code} in ${Date.now() - stopping} ms` : "still running after 10 s");
  await page.waitForSelector("body[data-lost]", { timeout: 10000 }).then(
    () => check(true, "the page saw the stream end"),
    () => check(false, "the page saw the stream end"),
  );
} finally {
  await browser.close();
  gateway.kill("SIGKILL");
  site.close();
}
process.exit(failures === 0 ? 0 : 1);
