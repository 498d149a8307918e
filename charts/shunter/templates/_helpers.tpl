{{/* Names are truncated to 63 characters: the DNS label limit of Kubernetes names. */}}
{{- define "shunter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "shunter.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's name: the full name truncated so that "-<component>" still fits. */}}
{{- define "shunter.component" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- printf "%s-%s" (include "shunter.fullname" $root | trunc (int (sub 62 (len $component))) | trimSuffix "-") $component -}}
{{- end -}}

{{- define "shunter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "shunter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "shunter.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "shunter.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "shunter.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "shunter.databaseSecret" -}}
{{- default (include "shunter.component" (list . "database")) .Values.database.existingSecret -}}
{{- end -}}

{{- define "shunter.hasDatabase" -}}
{{- if or .Values.database.existingSecret .Values.database.url -}}true{{- end -}}
{{- end -}}

{{/* Restricted Pod Security: non-root, read-only root filesystem, no privileges. */}}
{{- define "shunter.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "shunter.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "shunter.databaseEnv" -}}
{{- if include "shunter.hasDatabase" . }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "shunter.databaseSecret" . }}
      key: {{ .Values.database.secretKey }}
{{- end }}
{{- end -}}

{{/* The namespaces served, as JSON (admission.watchNamespaces plus the deprecated
watchNamespace); empty: every namespace. Read with fromJsonArray. */}}
{{- define "shunter.watchNamespaces" -}}
{{- $list := concat (list) (.Values.admission.watchNamespaces | default list) -}}
{{- with .Values.admission.watchNamespace }}{{ $list = append $list . }}{{ end -}}
{{- toJson (uniq $list) -}}
{{- end -}}

{{/* The namespaces never served, as JSON; a watched namespace among them is a mistake
the chart refuses rather than a silent no-op. */}}
{{- define "shunter.excludedNamespaces" -}}
{{- $list := concat (list) (.Values.admission.excludeNamespaces | default list) -}}
{{- if .Values.admission.excludeReleaseNamespace }}{{ $list = append $list .Release.Namespace }}{{ end -}}
{{- range $watched := fromJsonArray (include "shunter.watchNamespaces" $) }}
{{- if has $watched $list }}
{{- fail (printf "admission.watchNamespaces lists %s, which is excluded (admission.excludeNamespaces, or the release namespace with admission.excludeReleaseNamespace)" $watched) }}
{{- end }}
{{- end }}
{{- toJson (uniq $list) -}}
{{- end -}}

{{/* The environment both the operator and the API read to know what they serve. */}}
{{- define "shunter.scopeEnv" -}}
- name: SHUNTER_EXCLUDE_NAMESPACES
  value: {{ join "," (fromJsonArray (include "shunter.excludedNamespaces" .)) | quote }}
{{- end -}}

{{- define "shunter.kubeApiEnv" -}}
- name: SHUNTER_KUBE_QPS
  value: {{ .Values.kubeApi.qps | quote }}
- name: SHUNTER_KUBE_BURST
  value: {{ .Values.kubeApi.burst | quote }}
{{- end -}}

{{- define "shunter.apiPort" -}}
{{- ternary "https" "http" (ne .Values.api.tls.secretName "") -}}
{{- end -}}


{{/* Where trainer Pods send their reports (reports.url, or the API's Service). */}}
{{- define "shunter.reportURL" -}}
{{- if .Values.reports.url -}}
{{ .Values.reports.url }}
{{- else -}}
{{ include "shunter.apiPort" . }}://{{ include "shunter.component" (list . "api") }}.{{ .Release.Namespace }}.svc:{{ .Values.api.service.port }}/api/trainer/v1/report
{{- end -}}
{{- end -}}
