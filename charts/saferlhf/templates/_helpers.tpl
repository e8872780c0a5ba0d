{{/* Chart name, truncated to 63 chars. */}}
{{- define "saferlhf.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-saferlhf unless the release name already contains it. */}}
{{- define "saferlhf.fullname" -}}
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

{{- define "saferlhf.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "saferlhf.labels" -}}
helm.sh/chart: {{ include "saferlhf.chart" . }}
{{ include "saferlhf.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: saferlhf
{{- end }}

{{/* Labels that select the service pod. */}}
{{- define "saferlhf.selectorLabels" -}}
app.kubernetes.io/name: {{ include "saferlhf.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: control-plane
{{- end }}

{{- define "saferlhf.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "saferlhf.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Namespace where stage Jobs run. */}}
{{- define "saferlhf.stageNamespace" -}}
{{- default .Release.Namespace .Values.executor.namespace }}
{{- end }}

{{- define "saferlhf.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "saferlhf.artifactsClaim" -}}
{{- default (printf "%s-artifacts" (include "saferlhf.fullname" .)) .Values.artifacts.existingClaim }}
{{- end }}

{{- define "saferlhf.stateClaim" -}}
{{- default (printf "%s-state" (include "saferlhf.fullname" .)) .Values.state.existingClaim }}
{{- end }}

{{/* Fail early on combinations that cannot work. */}}
{{- define "saferlhf.validate" -}}
{{- if and .Values.postgresql.enabled (not .Values.postgresql.existingSecret) }}
{{- fail "postgresql.enabled needs postgresql.existingSecret: a Secret holding the postgresql:// URL under postgresql.secretKey" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName: a kubernetes.io/tls Secret with tls.crt and tls.key" }}
{{- end }}
{{- if not (or .Values.auth.tokensSecret .Values.tls.enabled .Values.auth.allowInsecureBind) }}
{{- fail "the service listens on the pod network: set auth.tokensSecret and/or tls.enabled (or auth.allowInsecureBind=true for a throwaway cluster)" }}
{{- end }}
{{- end }}
