{{/* Chart name, truncated to 63 characters (a DNS label). */}}
{{- define "warren.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "warren.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "warren.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "warren.labels" -}}
helm.sh/chart: {{ include "warren.chart" . }}
{{ include "warren.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: warren
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "warren.selectorLabels" -}}
app.kubernetes.io/name: {{ include "warren.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "warren.componentLabels" -}}
{{ include "warren.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "warren.componentSelectorLabels" -}}
{{ include "warren.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Resource names. */}}
{{- define "warren.gateway.fullname" -}}
{{- printf "%s-gateway" (include "warren.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* A bundled service's component name: its name with "_" as "-" (greeting_service -> greeting-service). */}}
{{- define "warren.service.component" -}}
{{- .name | replace "_" "-" | lower | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/* A bundled service's resource name: (dict "root" $ "name" "kv"). */}}
{{- define "warren.service.fullname" -}}
{{- printf "%s-%s" (include "warren.fullname" .root) (include "warren.service.component" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "warren.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "warren.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "warren.configMapName" -}}
{{- printf "%s-config" (include "warren.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret holding AMQP_URL: the existing one, or the one the chart makes. */}}
{{- define "warren.amqpSecretName" -}}
{{- if .Values.amqp.existingSecret }}
{{- .Values.amqp.existingSecret }}
{{- else }}
{{- printf "%s-amqp" (include "warren.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* A value percent-encoded for the user-info of a URL ("p@ss:w/rd" -> "p%40ss%3Aw%2Frd"; a space is
%20, not the "+" of a query string). */}}
{{- define "warren.urlEncode" -}}
{{- . | toString | urlquery | replace "+" "%20" }}
{{- end }}

{{/* Fails on broker settings the schema would refuse too (for --skip-schema-validation, and the
checks a schema cannot write: every host a non-empty host:port). */}}
{{- define "warren.validateAmqp" -}}
{{- $a := .Values.amqp }}
{{- if not (has $a.scheme (list "amqp" "amqps")) }}
{{- fail (printf "amqp.scheme must be amqp or amqps, not %q" (toString $a.scheme)) }}
{{- end }}
{{- if not (has $a.queueType (list "classic" "quorum")) }}
{{- fail (printf "amqp.queueType must be classic or quorum, not %q" (toString $a.queueType)) }}
{{- end }}
{{- range $i, $h := ($a.hosts | default list) }}
{{- if or (not (kindIs "string" $h)) (not (trim (toString $h))) }}
{{- fail (printf "amqp.hosts[%d] is empty: every entry is a host:port, e.g. rabbit-0.rabbit:5672" $i) }}
{{- end }}
{{- if regexMatch "[/@,;?#\\s]" (trim $h) }}
{{- fail (printf "amqp.hosts[%d] %q is not a host:port (no scheme, credentials, path or list)" $i $h) }}
{{- end }}
{{- end }}
{{- end }}

{{/* AMQP_URL as the chart's Secret holds it: one URL per entry of amqp.hosts, joined with commas,
or amqp.url as given. */}}
{{- define "warren.amqpUrls" -}}
{{- include "warren.validateAmqp" . }}
{{- $a := .Values.amqp }}
{{- if $a.hosts }}
{{- $urls := list }}
{{- range $a.hosts }}
{{- $urls = append $urls (printf "%s://%s:%s@%s/%s" $a.scheme (include "warren.urlEncode" $a.username) (include "warren.urlEncode" $a.password) (trim .) $a.vhost) }}
{{- end }}
{{- join "," $urls }}
{{- else if $a.url }}
{{- $a.url }}
{{- else }}
{{- fail "amqp.url and amqp.hosts are empty: set amqp.hosts (a cluster's host:port list), amqp.url, or amqp.existingSecret to the name of a Secret holding the broker URL" }}
{{- end }}
{{- end }}

{{/* The one URL KEDA's rabbitmq trigger takes: the first of AMQP_URL's list (commas or ";"). */}}
{{- define "warren.amqpFirstUrl" -}}
{{- regexSplit "[,;]" (include "warren.amqpUrls" .) -1 | first | trim }}
{{- end }}

{{/* The kind of a bundled service's workload (its merged settings): a StatefulSet when persistent. */}}
{{- define "warren.service.kind" -}}
{{- ternary "StatefulSet" "Deployment" (.persistence.enabled | default false) }}
{{- end }}

{{/* "true" when some bundled service is scaled by KEDA. */}}
{{- define "warren.keda.used" -}}
{{- range .Values.services }}
{{- $svc := mergeOverwrite (deepCopy $.Values.serviceDefaults) (deepCopy .) }}
{{- if ($svc.keda | default dict).enabled }}true{{ end }}
{{- end }}
{{- end }}

{{/* The Secret KEDA's TriggerAuthentication reads `host` from. */}}
{{- define "warren.keda.hostSecret" -}}
{{- .Values.keda.hostSecret | default (include "warren.amqpSecretName" .) }}
{{- end }}

{{- define "warren.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* WARREN_PUBLIC_URL: config.publicUrl, else the first ingress host, else "/". */}}
{{- define "warren.publicUrl" -}}
{{- if .Values.config.publicUrl }}
{{- .Values.config.publicUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- $tls := false }}
{{- range .Values.ingress.tls }}
{{- if has $host (.hosts | default list) }}{{ $tls = true }}{{ end }}
{{- end }}
{{- printf "%s://%s/" (ternary "https" "http" $tls) $host }}
{{- else }}
{{- "/" }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds: explicit, or the shutdown grace rounded up plus 15 s. */}}
{{- define "warren.terminationGrace" -}}
{{- if not (kindIs "invalid" .explicit) }}
{{- .explicit }}
{{- else }}
{{- add (div (add (int .graceMs) 999) 1000) 15 }}
{{- end }}
{{- end }}

{{/* Rolls the pods when the configuration or the chart-made Secret changes. */}}
{{- define "warren.configChecksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.amqp.existingSecret }}
checksum/amqp: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/* Environment every container gets besides the ConfigMap: AMQP_URL, the instance id, the queue type. */}}
{{- define "warren.commonEnv" -}}
- name: AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "warren.amqpSecretName" . }}
      key: {{ .Values.amqp.existingSecretKey }}
- name: WARREN_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: WARREN_QUEUE_TYPE
  value: {{ .Values.amqp.queueType | quote }}
{{- if .Values.amqp.directRequests }}
- name: WARREN_DIRECT_REQUESTS
  value: "true"
{{- end }}
{{- if .Values.amqp.caSecret }}
- name: AMQP_CA_FILE
  value: /etc/warren/amqp-ca/{{ .Values.amqp.caSecretKey }}
{{- end }}
{{- end }}

{{/* The broker's CA certificates, mounted when amqp.caSecret names a Secret. */}}
{{- define "warren.amqpCaVolumeMount" -}}
{{- if .Values.amqp.caSecret }}
- name: amqp-ca
  mountPath: /etc/warren/amqp-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "warren.amqpCaVolume" -}}
{{- if .Values.amqp.caSecret }}
- name: amqp-ca
  secret:
    secretName: {{ .Values.amqp.caSecret }}
    items:
      - key: {{ .Values.amqp.caSecretKey }}
        path: {{ .Values.amqp.caSecretKey }}
{{- end }}
{{- end }}

{{/* NetworkPolicy egress every Warren pod needs: DNS, the broker, and networkPolicy.extraEgress. */}}
{{- define "warren.networkPolicy.egress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
- ports:
    {{- range .Values.networkPolicy.broker.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .Values.networkPolicy.broker.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- with .Values.networkPolicy.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end }}
