{{/* Names and labels shared by every object of the chart. */}}

{{- define "k8s-ee.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "k8s-ee.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "k8s-ee.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "k8s-ee.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "k8s-ee.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "k8s-ee.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The selector of one component: `dict "root" $ "component" "gateway"`. */}}
{{- define "k8s-ee.selector" -}}
app.kubernetes.io/name: {{ include "k8s-ee.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "k8s-ee.componentLabels" -}}
{{ include "k8s-ee.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "k8s-ee.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "k8s-ee.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-credentials" (include "k8s-ee.fullname" .)) -}}
{{- end -}}

{{- define "k8s-ee.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (printf "%s-worker" (include "k8s-ee.fullname" .)) -}}
{{- end -}}

{{- define "k8s-ee.mongodbClusterRole" -}}
{{- printf "%s-mongodb-database" (include "k8s-ee.fullname" .) -}}
{{- end -}}

{{- define "k8s-ee.redisName" -}}
{{- printf "%s-redis" (include "k8s-ee.fullname" .) -}}
{{- end -}}

{{/* One K8S_EE_* variable from a key of the credentials Secret; absent keys are fine. */}}
{{- define "k8s-ee.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "k8s-ee.secretName" .root }}
      key: {{ index .root.Values.secrets.keys .key }}
      optional: true
{{- end -}}

{{/* Where Redis is: the same for both processes. */}}
{{- define "k8s-ee.redisEnv" -}}
{{- $redis := .Values.redis -}}
{{- if eq $redis.mode "bundled" }}
- name: K8S_EE_REDIS_URL
  value: {{ printf "redis://%s:6379/0" (include "k8s-ee.redisName" .) | quote }}
{{- else if eq $redis.mode "external" }}
{{- if $redis.external.url }}
- name: K8S_EE_REDIS_URL
  value: {{ $redis.external.url | quote }}
{{- else }}
{{ include "k8s-ee.secretEnv" (dict "root" . "name" "K8S_EE_REDIS_URL" "key" "redisUrl") }}
{{- end }}
{{- else }}
- name: K8S_EE_REDIS_URL
  value: {{ $redis.sentinel.url | quote }}
- name: K8S_EE_REDIS_SENTINELS
  value: {{ join "," $redis.sentinel.sentinels | quote }}
- name: K8S_EE_REDIS_SENTINEL_MASTER
  value: {{ $redis.sentinel.master | quote }}
{{ include "k8s-ee.secretEnv" (dict "root" . "name" "K8S_EE_REDIS_SENTINEL_PASSWORD" "key" "redisSentinelPassword") }}
{{- end }}
{{ include "k8s-ee.secretEnv" (dict "root" . "name" "K8S_EE_REDIS_PASSWORD" "key" "redisPassword") }}
{{- end -}}

{{/* Settings both processes get: the chart's own, then the user's `config`. */}}
{{- define "k8s-ee.configEnv" -}}
- name: K8S_EE_LOG_LEVEL
  value: {{ .Values.config.LOG_LEVEL | default "INFO" | quote }}
{{- range $name, $value := .Values.config }}
{{- if ne $name "LOG_LEVEL" }}
- name: {{ printf "K8S_EE_%s" $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Egress every pod needs: DNS, and Redis wherever it is. */}}
{{- define "k8s-ee.baseEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.dns.namespace }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- if eq .Values.redis.mode "bundled" }}
- to:
    - podSelector:
        matchLabels:
          {{- include "k8s-ee.selector" (dict "root" . "component" "redis") | nindent 10 }}
  ports:
    - {protocol: TCP, port: 6379}
{{- else }}
- to:
    {{- range .Values.redis.egress.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range .Values.redis.egress.ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end }}
{{- end -}}

{{/* Refusals: values the schema cannot judge alone. */}}
{{- define "k8s-ee.checks" -}}
{{- $pdb := .Values.gateway.pdb -}}
{{- if and $pdb.enabled (not (kindIs "invalid" $pdb.minAvailable)) -}}
{{- $least := ternary .Values.gateway.hpa.minReplicas .Values.gateway.replicas .Values.gateway.hpa.enabled -}}
{{- if ge (int $pdb.minAvailable) (int $least) -}}
{{- fail (printf "gateway.pdb.minAvailable=%d with %d gateway replicas would block every node drain: use a value below the replicas, or maxUnavailable" (int $pdb.minAvailable) (int $least)) -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "sentinel") (not .Values.redis.sentinel.sentinels) -}}
{{- fail "redis.mode=sentinel needs redis.sentinel.sentinels (host:port of each)" -}}
{{- end -}}
{{- end -}}
