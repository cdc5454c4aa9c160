// What every browser check launches Chromium with: the flags of the machine notes (no sandbox as
// root, no GPU, nothing that phones home); the resolver rule makes any host name other than
// localhost fail locally instead of going to DNS.
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
];
