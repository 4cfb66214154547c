{{/*
The operator Deployment of one shard ("shard": "" is the one for the resources without the shard label).
Called with (dict "root" $ "shard" NAME); $root is the chart context.
*/}}
{{- define "httpsync-operator.deployment" -}}
{{- $root := .root }}
{{- $shard := .shard }}
{{- $ctx := . }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "httpsync-operator.instanceName" $ctx }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "httpsync-operator.labels" $root | nindent 4 }}
    {{- with $shard }}
    sharding.httpsync.io/key: {{ . }}
    {{- end }}
spec:
  # One replica, replaced rather than rolled: kopf has no leader election, and two operators would sync
  # (and delete) the same entities. Recreate also lets a ReadWriteOnce data claim be detached by the old Pod
  # before the new one (possibly on another node) attaches it; a rolling update would hang on it.
  replicas: 1
  strategy:
    type: Recreate
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      {{- include "httpsync-operator.instanceSelectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      {{- with $root.Values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      labels:
        {{- include "httpsync-operator.instanceSelectorLabels" $ctx | nindent 8 }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "httpsync-operator.serviceAccountName" $root }}
      automountServiceAccountToken: true
      {{- with $root.Values.image.pullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      {{- with $root.Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: 30
      containers:
        - name: operator
          image: {{ include "httpsync-operator.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          {{- if $root.Values.verbose }}
          # Debug logging is a flag of `httpsync` itself, before the subcommand.
          command: ["httpsync", "-vv", "run"]
          {{- else }}
          # The image's entrypoint is `httpsync run`.
          {{- end }}
          args:
            {{- range $root.Values.watchNamespaces }}
            - --namespace={{ . }}
            {{- else }}
            - --all-namespaces
            {{- end }}
            - --metrics-port={{ ternary $root.Values.metrics.port 0 $root.Values.metrics.enabled }}
            - --health-port={{ $root.Values.health.port }}
            {{- range $root.Values.destinationPolicy.allow }}
            - --allow-destination={{ . }}
            {{- end }}
            {{- range $root.Values.destinationPolicy.deny }}
            - --deny-destination={{ . }}
            {{- end }}
            {{- with $shard }}
            - --shard={{ . }}
            {{- end }}
          env:
            # Both on the data volume (persistence.*): the embedded catalog and the remote sinks' sync state.
            - name: HTTPSYNC_CATALOG
              value: {{ include "httpsync-operator.catalogPath" $root | quote }}
            - name: HTTPSYNC_STATE
              value: {{ include "httpsync-operator.statePath" $root | quote }}
            - name: HTTPSYNC_DEFAULT_SINK
              value: {{ $root.Values.defaultSink.type | quote }}
            {{- if $root.Values.defaultSink.port.existingSecret }}
            - name: HTTPSYNC_PORT_BASE_URL
              value: {{ $root.Values.defaultSink.port.baseUrl | quote }}
            - name: HTTPSYNC_PORT_CLIENT_ID
              valueFrom:
                secretKeyRef:
                  name: {{ $root.Values.defaultSink.port.existingSecret }}
                  key: clientId
            - name: HTTPSYNC_PORT_CLIENT_SECRET
              valueFrom:
                secretKeyRef:
                  name: {{ $root.Values.defaultSink.port.existingSecret }}
                  key: clientSecret
            {{- end }}
            {{- if $root.Values.defaultSink.webhook.url }}
            - name: HTTPSYNC_WEBHOOK_URL
              value: {{ $root.Values.defaultSink.webhook.url | quote }}
            {{- if $root.Values.defaultSink.webhook.existingSecret }}
            - name: HTTPSYNC_WEBHOOK_SECRET
              valueFrom:
                secretKeyRef:
                  name: {{ $root.Values.defaultSink.webhook.existingSecret }}
                  key: {{ $root.Values.defaultSink.webhook.existingSecretKey }}
            {{- end }}
            {{- end }}
            {{- with $root.Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            {{- if $root.Values.metrics.enabled }}
            - name: metrics
              containerPort: {{ $root.Values.metrics.port }}
              protocol: TCP
            {{- end }}
            - name: health
              containerPort: {{ $root.Values.health.port }}
              protocol: TCP
          livenessProbe:
            httpGet:
              path: /healthz
              port: health
            {{- toYaml $root.Values.livenessProbe | nindent 12 }}
          {{- with $root.Values.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: data
              mountPath: {{ include "httpsync-operator.dataDir" $root }}
      volumes:
        - name: tmp
          emptyDir: {{ if $root.Values.tmpSizeLimit }}{sizeLimit: {{ $root.Values.tmpSizeLimit }}}{{ else }}{}{{ end }}
        - name: data
          {{- if $root.Values.persistence.enabled }}
          persistentVolumeClaim:
            claimName: {{ include "httpsync-operator.pvcName" $ctx }}
          {{- else }}
          emptyDir: {{ if $root.Values.dataSizeLimit }}{sizeLimit: {{ $root.Values.dataSizeLimit }}}{{ else }}{}{{ end }}
          {{- end }}
      {{- with $root.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
