{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "httpsync-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: fullnameOverride, else <release>-<chart> (or the release name alone
when it already contains the chart name).
*/}}
{{- define "httpsync-operator.fullname" -}}
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

{{- define "httpsync-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "httpsync-operator.labels" -}}
helm.sh/chart: {{ include "httpsync-operator.chart" . }}
{{ include "httpsync-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: httpsync
{{- end }}

{{/*
Labels that select the operator Pod (immutable in a Deployment: never add to them).
*/}}
{{- define "httpsync-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "httpsync-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "httpsync-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "httpsync-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "httpsync-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The operator's data folder: the mount point of the "data" volume (the claim when persistence is on, else an
emptyDir), so it always exists and is writable. It holds the embedded catalog and the change-detection state of
the remote sinks; the paths are the image's HTTPSYNC_CATALOG and HTTPSYNC_STATE.
*/}}
{{- define "httpsync-operator.dataDir" -}}
/var/lib/httpsync
{{- end }}

{{- define "httpsync-operator.catalogPath" -}}
/var/lib/httpsync/catalog.db
{{- end }}

{{- define "httpsync-operator.statePath" -}}
/var/lib/httpsync/state.db
{{- end }}

{{/*
One operator instance: (dict "root" $ "shard" NAME), "shard" "" for the one without a shard.
instanceName: the full name, or <full name>-<shard> (the full name cut so that it fits in 63 characters).
*/}}
{{- define "httpsync-operator.instanceName" -}}
{{- $fullname := include "httpsync-operator.fullname" .root }}
{{- if .shard }}
{{- printf "%s-%s" ($fullname | trunc (int (sub 62 (len .shard))) | trimSuffix "-") .shard }}
{{- else }}
{{- $fullname }}
{{- end }}
{{- end }}

{{/*
The Pod labels a Deployment selects: the chart's, plus the shard label for a shard's. The unsharded Deployment's
selector is the chart's alone (immutable: unchanged since before shards). It matches the shards' Pods too, which is
harmless: a Deployment only adopts ReplicaSets without an owner, and each ReplicaSet selects by pod-template-hash.
*/}}
{{- define "httpsync-operator.instanceSelectorLabels" -}}
{{ include "httpsync-operator.selectorLabels" .root }}
{{- with .shard }}
sharding.httpsync.io/key: {{ . }}
{{- end }}
{{- end }}

{{/*
The data claim of an instance: persistence.existingClaim for the one without a shard, if set; else
<instance name>-data, created by the chart.
*/}}
{{- define "httpsync-operator.pvcName" -}}
{{- if and (not .shard) .root.Values.persistence.existingClaim }}
{{- .root.Values.persistence.existingClaim }}
{{- else }}
{{- printf "%s-data" (include "httpsync-operator.instanceName" .) }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs in every namespace it watches (a ClusterRole in cluster-wide mode, one Role per
namespace otherwise). Keep in step with tests/helm/test_chart.py::EXPECTED_NAMESPACED. No ConfigMaps: the sync
state lives on the data volume, not in the cluster.
*/}}
{{- define "httpsync-operator.namespacedRules" -}}
# Its own resources: watch them, patch metadata (the finalizer, kopf's annotations) and status.
- apiGroups: ["httpsync.io"]
  resources: ["httpsources", "httpendpointmappings"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["httpsync.io"]
  resources: ["httpsources/status", "httpendpointmappings/status"]
  verbs: ["patch"]
# Events on state changes (kopf posts core/v1 Events).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# Credentials an HttpSource refers to by name: read one by one, never listed.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}

{{/*
Cluster-scoped reads kopf needs in every mode: CRDs (to find its resources) and namespaces. Watching a list of
namespaces, kopf lists and watches all namespaces to match the list; without the permission it retries each
Forbidden for about a minute before it starts (tests/helm/test_rbac_proof.py).
*/}}
{{- define "httpsync-operator.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
