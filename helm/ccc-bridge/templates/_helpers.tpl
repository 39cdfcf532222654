{{- define "ccc-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ccc-bridge.fullname" -}}
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

{{- define "ccc-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ccc-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ccc-bridge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ccc-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ccc-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ccc-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Settings that are secrets: never in the ConfigMap. webhooks.endpoints holds the endpoints'
signing secrets, so the whole list is one.
*/}}
{{- define "ccc-bridge.secretSettings" -}}
ccc.access_key_id ccc.access_key_secret ccc.security_token ccc.bearer_token kafka.sasl_password http.api_keys webhooks.endpoints
{{- end }}

{{/*
`section: {field: value}` as `CCC_BRIDGE_<SECTION>__<FIELD>: "value"` lines, the names the
settings layer reads from the environment and from secret files. Strings go as they are;
everything else as JSON, which also keeps large numbers out of Go's 6.048e+08 notation.
*/}}
{{- define "ccc-bridge.settingsEnv" -}}
{{- range $section, $fields := . }}
{{- range $field, $value := $fields }}
{{- if not (kindIs "invalid" $value) }}
{{ printf "CCC_BRIDGE_%s__%s" (upper $section) (upper $field) }}: {{ ternary $value (toJson $value) (kindIs "string" $value) | toJson }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret mounted as files: ours, or the one named by existingSecret, or none. */}}
{{- define "ccc-bridge.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else if .Values.secrets }}
{{- include "ccc-bridge.fullname" . }}
{{- end }}
{{- end }}

{{/* The image by digest when one is given, else by tag (the chart's appVersion by default). */}}
{{- define "ccc-bridge.image" -}}
{{- with .Values.image }}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository (.tag | default $.Chart.AppVersion) }}
{{- end }}
{{- end }}
{{- end }}

{{/* `affinity`, with the podAntiAffinity of `podAntiAffinity.type` unless it has its own. */}}
{{- define "ccc-bridge.affinity" -}}
{{- $affinity := deepCopy .Values.affinity }}
{{- with .Values.podAntiAffinity }}
{{- if and (ne .type "none") (not (hasKey $affinity "podAntiAffinity")) }}
{{- $term := dict
  "labelSelector" (dict "matchLabels" (include "ccc-bridge.selectorLabels" $ | fromYaml))
  "topologyKey" .topologyKey }}
{{- if eq .type "soft" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- else }}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- end }}
{{- end }}
{{- end }}
{{- with $affinity }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/* The `helm test` pod's labels: the standard ones, but a name of its own, so that no
selector of the release (the Deployment's, the Service's) takes it for one of its pods. */}}
{{- define "ccc-bridge.testLabels" -}}
{{- $labels := include "ccc-bridge.labels" . | fromYaml }}
{{- $_ := set $labels "app.kubernetes.io/name" (printf "%s-test" (include "ccc-bridge.name" . | trunc 58)) }}
{{- toYaml $labels }}
{{- end }}
