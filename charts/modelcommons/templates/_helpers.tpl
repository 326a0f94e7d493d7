{{/* The release's base name. */}}
{{- define "modelcommons.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelcommons.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "modelcommons.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "modelcommons.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "modelcommons.trainerImage" -}}
{{ .Values.trainerImage.repository }}:{{ .Values.trainerImage.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "modelcommons.serviceAccount" -}}
{{ include "modelcommons.fullname" . }}
{{- end -}}

{{/* The ledger's key Secret and addresses ConfigMap: the dev chain's when it is enabled. */}}
{{- define "modelcommons.ledgerRpc" -}}
{{- if .Values.devChain.enabled -}}
http://{{ include "modelcommons.fullname" . }}-anvil.{{ .Release.Namespace }}.svc:8545
{{- else -}}
{{ .Values.ledger.rpcUrl }}
{{- end -}}
{{- end -}}
{{- define "modelcommons.keySecret" -}}
{{- if .Values.devChain.enabled -}}{{ include "modelcommons.fullname" . }}-dev-key{{- else -}}{{ .Values.ledger.keySecret.name }}{{- end -}}
{{- end -}}
{{- define "modelcommons.addressesConfigMap" -}}
{{- if .Values.devChain.enabled -}}{{ include "modelcommons.fullname" . }}-addresses{{- else -}}{{ .Values.ledger.addressesConfigMap.name }}{{- end -}}
{{- end -}}

{{/* The restricted pod security context every container of the chart runs with. */}}
{{- define "modelcommons.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "modelcommons.trustedNamespace" -}}
{{- default .Release.Namespace .Values.evaluation.namespace -}}
{{- end -}}
