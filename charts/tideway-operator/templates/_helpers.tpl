{{/* Chart name, truncated to fit a label. */}}
{{- define "tideway-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release already contains it. */}}
{{- define "tideway-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "tideway-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tideway-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tideway-operator.labels" -}}
{{ include "tideway-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "tideway-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tideway-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Rules the operator needs on the namespaces it watches. Keep in step with what
the reconcilers call (docs/operations.md lists why each is needed).
*/}}
{{- define "tideway-operator.rules" -}}
- apiGroups: ["tideway.dev"]
  resources: ["messageclusters", "topics", "consumerautoscalers", "mirrorpolicies"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["tideway.dev"]
  resources: ["messageclusters/status", "topics/status", "consumerautoscalers/status", "mirrorpolicies/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["tideway.dev"]
  resources: ["messageclusters/finalizers", "topics/finalizers", "mirrorpolicies/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# ConsumerAutoscaler: the scale subresource of the workloads it may scale
# (autoscaler.scaleTargets), and HPAs, to refuse a workload that one already scales.
{{- range .Values.autoscaler.scaleTargets }}
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ range $i, $r := .resources }}{{ if $i }}, {{ end }}{{ printf "%s/scale" $r | quote }}{{ end }}]
  verbs: ["get", "patch"]
{{- end }}
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list"]
{{- end }}
