{{/* The chart's name, and the objects' base name: the release name when it
contains the chart's (release "dr" gives "dr", as in k8s/). */}}
{{- define "dr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dr.fullname" -}}
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

{{/* Selector labels: the only labels of k8s/ (which has no Helm release). */}}
{{- define "dr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Every object's labels: the selector labels and Helm's standard ones
(helm.sh/chart, app.kubernetes.io/version and managed-by, which the test
comparing the chart with k8s/ ignores). */}}
{{- define "dr.labels" -}}
{{ include "dr.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "dr.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* The namespaces of the configured policies, each once, in order. */}}
{{- define "dr.policyNamespaces" -}}
{{- $seen := list }}
{{- range .Values.config.policies }}
{{- if not (has .namespace $seen) }}
{{- $seen = append $seen .namespace }}
{{- end }}
{{- end }}
{{- toJson $seen }}
{{- end }}

{{/* Refusals: settings that would install something that cannot work. */}}
{{- define "dr.validate" -}}
{{- if and .Values.catalog.sqlite.enabled (ne (int .Values.replicas) 1) }}
{{- fail (printf "catalog.sqlite.enabled needs replicas: 1 (got %v): replicas cannot share a SQLite file; use PostgreSQL (catalog.secret or catalog.url) for more" .Values.replicas) }}
{{- end }}
{{- if and (not .Values.catalog.sqlite.enabled) (not .Values.catalog.secret.name) }}
{{- fail "catalog.secret.name is empty: the PostgreSQL catalog URL is read from a Secret (or set catalog.sqlite.enabled=true with replicas: 1)" }}
{{- end }}
{{- if and .Values.catalog.url .Values.catalog.sqlite.enabled }}
{{- fail "catalog.url and catalog.sqlite.enabled are both set: choose one catalog" }}
{{- end }}
{{- if hasKey .Values.config "catalog" }}
{{- fail "config.catalog is set: the catalog URL holds a password and goes in catalog.url (a Secret), never in the ConfigMap" }}
{{- end }}
{{- if ne (empty .Values.s3.accessKeyId) (empty .Values.s3.secretAccessKey) }}
{{- fail "s3.accessKeyId and s3.secretAccessKey: set both (the chart creates the Secret) or neither" }}
{{- end }}
{{- if and .Values.s3.accessKeyId (not .Values.s3.secret.name) }}
{{- fail "s3.accessKeyId is set but s3.secret.name is empty: name the Secret the chart creates" }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.shutdownGraceSeconds) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be longer than shutdownGraceSeconds (%v): the kubelet would kill dr before it releases its Leases" .Values.terminationGracePeriodSeconds .Values.shutdownGraceSeconds) }}
{{- end }}
{{- end }}
