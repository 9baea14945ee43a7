{{/*
The services' configuration: environment variable name → value, one map per component. This file
is the only place that knows the variable names of ingress/src/config.ts and
controller/src/config.ts; ConfigMaps render these maps and each pod carries a checksum of its own
map (and of the chart's Secrets), so a changed value rolls exactly the pods that read it.
*/}}

{{/* Shared by every service (a service ignores the variables it does not use). */}}
{{- define "unmix.env.common" -}}
LOG_LEVEL: {{ .Values.logLevel | quote }}
S3_ENDPOINT: {{ required "objectStore.endpoint is required (e.g. http://minio.storage.svc:9000)" .Values.objectStore.endpoint | quote }}
{{- with .Values.objectStore.publicEndpoint }}
S3_PUBLIC_ENDPOINT: {{ . | quote }}
{{- end }}
S3_REGION: {{ .Values.objectStore.region | quote }}
S3_BUCKET: {{ .Values.objectStore.bucket | quote }}
WHATSAPP_API_URL: {{ .Values.whatsapp.apiUrl | quote }}
WHATSAPP_API_VERSION: {{ .Values.whatsapp.apiVersion | quote }}
WHATSAPP_MEDIA_HOSTS: {{ join "," .Values.whatsapp.mediaHosts | quote }}
MODEL_NAME: {{ .Values.job.model | quote }}
KUBE_NAMESPACE: {{ .Release.Namespace | quote }}
MAX_INPUT_BYTES: {{ .Values.limits.maxInputBytes | int64 | quote }}
{{- with .Values.telemetry.otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
{{- with .Values.telemetry.resourceAttributes }}
OTEL_RESOURCE_ATTRIBUTES: {{ . | quote }}
{{- end }}
{{- if .Values.telemetry.otlpEndpoint }}
OTEL_TRACES_SAMPLER: {{ .Values.telemetry.sampler | quote }}
OTEL_TRACES_SAMPLER_ARG: {{ .Values.telemetry.samplerArg | toString | quote }}
{{- end }}
{{- end }}

{{/* What the webhook and the worker share: NATS, the JetStream layout (whichever starts first creates it), listeners. */}}
{{- define "unmix.env.ingressBase" -}}
{{- $s := .Values.nats.streams }}
NATS_URL: {{ required "nats.url is required (NATS with JetStream, e.g. nats://nats.nats.svc:4222)" .Values.nats.url | quote }}
NATS_REPLICAS: {{ .Values.nats.replicas | int64 | quote }}
{{- if include "unmix.natsAuth" . }}
NATS_CREDS_FILE: {{ printf "/etc/unmix/nats/%s" .Values.nats.credsKey | quote }}
{{- end }}
INBOUND_MAX_AGE_SECONDS: {{ $s.inboundMaxAgeSeconds | int64 | quote }}
DEDUP_WINDOW_SECONDS: {{ $s.dedupWindowSeconds | int64 | quote }}
AUDIT_MAX_AGE_SECONDS: {{ $s.auditMaxAgeSeconds | int64 | quote }}
DEADLETTER_MAX_AGE_SECONDS: {{ $s.deadLetterMaxAgeSeconds | int64 | quote }}
PROCESSED_TTL_SECONDS: {{ .Values.limits.processedIdsTtlSeconds | int64 | quote }}
ACTIVE_USER_TTL_SECONDS: {{ .Values.limits.activeUserTtlSeconds | int64 | quote }}
PORT: {{ .Values.ingress.ports.http | int64 | quote }}
{{- end }}

{{- define "unmix.env.webhookOnly" -}}
WEBHOOK_BODY_LIMIT_BYTES: {{ .Values.ingress.bodyLimitBytes | int64 | quote }}
PUBLISH_TIMEOUT_MS: {{ .Values.ingress.publishTimeoutMs | int64 | quote }}
SHUTDOWN_TIMEOUT_SECONDS: {{ sub .Values.ingress.terminationGracePeriodSeconds (add .Values.ingress.preStopSleepSeconds 10) | quote }}
{{- end }}

{{- define "unmix.env.workerOnly" -}}
{{- $w := .Values.worker }}
ADMIN_PORT: {{ .Values.ingress.ports.admin | int64 | quote }}
ADMIN_AUTH: {{ .Values.admin.auth | quote }}
ADMIN_TOKEN_AUDIENCES: {{ join "," .Values.admin.tokenAudiences | quote }}
ADMIN_AUTH_CACHE_SECONDS: {{ .Values.admin.cacheSeconds | int64 | quote }}
RESULT_CACHE_TTL_SECONDS: {{ .Values.limits.cacheTtlSeconds | int64 | quote }}
RATE_LIMIT_PER_HOUR: {{ .Values.limits.userJobsPerHour | int64 | quote }}
WORKER_CONCURRENCY: {{ $w.concurrency | int64 | quote }}
WORKER_ACK_WAIT_SECONDS: {{ $w.ackWaitSeconds | int64 | quote }}
WORKER_MAX_DELIVER: {{ $w.maxDeliver | int64 | quote }}
WORKER_BACKOFF_SECONDS: {{ include "unmix.numbers" $w.backoffSeconds | quote }}
{{- with .Values.telemetry.tracingUiUrl }}
TRACING_UI_URL: {{ . | quote }}
{{- end }}
BROADCAST_MESSAGES_PER_SECOND: {{ $w.broadcast.messagesPerSecond | toString | quote }}
BROADCAST_MAX_ATTEMPTS: {{ $w.broadcast.maxAttempts | int64 | quote }}
BROADCAST_RETRY_MAX_SECONDS: {{ $w.broadcast.retryMaxSeconds | int64 | quote }}
{{- with .Values.whatsapp.businessAccountId }}
WHATSAPP_BUSINESS_ACCOUNT_ID: {{ . | quote }}
{{- end }}
{{- end }}

{{/* The webhook pods (and, with worker.enabled=false, the worker too: ROLE=all). */}}
{{- define "unmix.env.ingress" -}}
ROLE: {{ ternary "webhook" "all" .Values.worker.enabled | quote }}
{{- include "unmix.env.natsUser" (dict "ctx" . "user" (ternary "webhook" "ingress" .Values.worker.enabled)) }}
{{ include "unmix.env.ingressBase" . | trim }}
{{ include "unmix.env.webhookOnly" . | trim }}
{{- if not .Values.worker.enabled }}
{{ include "unmix.env.workerOnly" . | trim }}
{{- end }}
{{- end }}

{{/* The worker Deployment. */}}
{{- define "unmix.env.worker" -}}
ROLE: "worker"
{{- include "unmix.env.natsUser" (dict "ctx" . "user" "worker") }}
{{ include "unmix.env.ingressBase" . | trim }}
SHUTDOWN_TIMEOUT_SECONDS: {{ sub .Values.worker.terminationGracePeriodSeconds 10 | quote }}
{{ include "unmix.env.workerOnly" . | trim }}
{{- end }}

{{/* The controller, and through it the GPU Jobs. */}}
{{- define "unmix.env.controller" -}}
{{- $j := .Values.job }}
{{- $c := .Values.controller }}
HTTP_PORT: {{ $c.ports.http | int64 | quote }}
{{- /* the audit trail: its NATS user may publish the controller's audit entries only */}}
NATS_URL: {{ required "nats.url is required (NATS with JetStream, e.g. nats://nats.nats.svc:4222)" .Values.nats.url | quote }}
{{- if include "unmix.natsAuth" . }}
NATS_CREDS_FILE: {{ printf "/etc/unmix/nats/%s" .Values.nats.credsKey | quote }}
{{- end }}
{{- include "unmix.env.natsUser" (dict "ctx" . "user" "controller") }}
JOB_IMAGE: {{ include "unmix.image" (dict "ctx" . "image" $j.image) | quote }}
JOB_IMAGE_PULL_POLICY: {{ $j.image.pullPolicy | quote }}
JOB_GPU_RESOURCE: {{ $j.gpu.resourceName | quote }}
JOB_GPU_COUNT: {{ $j.gpu.count | int64 | quote }}
JOB_DEVICE: {{ $j.device | quote }}
{{- with $j.runtimeClassName }}
JOB_RUNTIME_CLASS: {{ . | quote }}
{{- end }}
{{- with $j.priorityClassName }}
JOB_PRIORITY_CLASS: {{ . | quote }}
{{- end }}
{{- with $j.kueue.queueName }}
KUEUE_QUEUE_NAME: {{ . | quote }}
{{- end }}
{{- with $j.kueue.priorityClass }}
KUEUE_PRIORITY_CLASS: {{ . | quote }}
{{- end }}
JOB_NODE_SELECTOR: {{ $j.nodeSelector | toJson | quote }}
JOB_TOLERATIONS: {{ $j.tolerations | toJson | quote }}
JOB_CPU_REQUEST: {{ $j.resources.requests.cpu | quote }}
JOB_CPU_LIMIT: {{ $j.resources.limits.cpu | quote }}
JOB_MEMORY_REQUEST: {{ $j.resources.requests.memory | quote }}
JOB_MEMORY_LIMIT: {{ $j.resources.limits.memory | quote }}
JOB_WORK_DIR_SIZE_LIMIT: {{ $j.scratchSizeLimit | quote }}
JOB_RUN_AS_USER: {{ $j.runAsUser | int64 | quote }}
JOB_BACKOFF_LIMIT: {{ $j.backoffLimit | int64 | quote }}
JOB_ACTIVE_DEADLINE_SECONDS: {{ $j.activeDeadlineSeconds | int64 | quote }}
JOB_TTL_SECONDS_AFTER_FINISHED: {{ $j.ttlSecondsAfterFinished | int64 | quote }}
JOB_PENDING_DEADLINE_SECONDS: {{ $j.pendingDeadlineSeconds | int64 | quote }}
{{- $demucs := dict "DEMUCS_OVERLAP" ($j.demucs.overlap | toString) "DEMUCS_SHIFTS" ($j.demucs.shifts | toString) "CHUNK_SECONDS" ($j.demucs.chunkSeconds | toString) }}
{{- with $j.demucs.segment }}{{ $_ := set $demucs "DEMUCS_SEGMENT" (. | toString) }}{{ end }}
JOB_EXTRA_ENV: {{ merge (dict) $j.extraEnv $demucs | toJson | quote }}
MAX_DURATION_SECONDS: {{ .Values.limits.maxDurationSeconds | int64 | quote }}
FETCH_DEADLINE_SECONDS: {{ $c.fetchDeadlineSeconds | int64 | quote }}
REPLY_CONFIRM_SECONDS: {{ $c.replyConfirmSeconds | int64 | quote }}
MAX_AGE_FETCHING_SECONDS: {{ $c.maxAgeSeconds.fetching | int64 | quote }}
MAX_AGE_SEPARATING_SECONDS: {{ $c.maxAgeSeconds.separating | int64 | quote }}
MAX_AGE_REPLYING_SECONDS: {{ $c.maxAgeSeconds.replying | int64 | quote }}
MAX_AGE_UNFINISHED_SECONDS: {{ $c.maxAgeSeconds.unfinished | int64 | quote }}
RECONCILE_CONCURRENCY: {{ $c.concurrency | int64 | quote }}
PER_USER_MAX_ACTIVE_JOBS: {{ $c.perUserMaxActiveJobs | int64 | quote }}
LEADER_ELECT: "true"
LEASE_NAME: {{ include "unmix.leaseName" . | quote }}
LEASE_DURATION_SECONDS: {{ $c.leaderElection.leaseDurationSeconds | int64 | quote }}
RENEW_DEADLINE_SECONDS: {{ $c.leaderElection.renewDeadlineSeconds | int64 | quote }}
RETRY_PERIOD_SECONDS: {{ $c.leaderElection.retryPeriodSeconds | int64 | quote }}
CACHE_TTL_SECONDS: {{ .Values.limits.cacheTtlSeconds | int64 | quote }}
SJ_RETENTION_SECONDS: {{ .Values.limits.retentionSeconds | int64 | quote }}
ORPHAN_GRACE_SECONDS: {{ .Values.limits.orphanGraceSeconds | int64 | quote }}
GC_INTERVAL_SECONDS: {{ $c.gcIntervalSeconds | int64 | quote }}
GC_PAGE_SIZE: {{ $c.gcPageSize | int64 | quote }}
{{- end }}

{{/* Listen addresses: (dict "ctx" $ "names" (list "HOST" "ADMIN_HOST")) → EnvVars. */}}
{{- define "unmix.env.listen" -}}
{{- $addr := .ctx.Values.listenAddress }}
{{- range .names }}
- name: {{ . }}
{{- if eq $addr "podIP" }}
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- else }}
  value: {{ $addr | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Fingerprints of what the chart writes into its own Secrets (checksummed into pods with the config). */}}
{{- define "unmix.secretData" -}}
{{- if not .Values.whatsapp.existingSecret }}
whatsapp: {{ list .Values.whatsapp.appSecret .Values.whatsapp.accessToken .Values.whatsapp.verifyToken | toJson | sha256sum }}
{{- end }}
{{- if not .Values.objectStore.existingSecret }}
objectStore: {{ list .Values.objectStore.accessKey .Values.objectStore.secretKey | toJson | sha256sum }}
{{- end }}
{{- if and (include "unmix.natsAuth" .) (not .Values.nats.existingSecret) }}
nats: {{ .Values.nats.creds | sha256sum }}
{{- end }}
natsAuth: {{ .Values.nats.auth | toJson | sha256sum }}
{{- if not .Values.keys.existingSecret }}
keys: {{ list .Values.keys.adminToken .Values.keys.userKey .Values.keys.inboundSigningKey | toJson | sha256sum }}
{{- end }}
{{- end }}

{{- define "unmix.verifyToken" -}}
{{- include "unmix.keptRandom" (dict "ctx" . "secret" (include "unmix.whatsappSecretName" .) "key" .Values.whatsapp.secretKeys.verifyToken "value" .Values.whatsapp.verifyToken) }}
{{- end }}

{{/* (dict "ctx" $ "component" "ingress") → the checksum annotation value for that component's pods. */}}
{{- define "unmix.checksum" -}}
{{- $env := include (printf "unmix.env.%s" .component) .ctx }}
{{- list (include "unmix.env.common" .ctx) $env (include "unmix.secretData" .ctx) .ctx.Values.listenAddress | toJson | sha256sum }}
{{- end }}

{{/* A list of numbers as "a,b,c", whole numbers without a decimal point or exponent. */}}
{{- define "unmix.numbers" -}}
{{- $out := list }}
{{- range . }}
{{- $out = append $out (ternary (int64 . | toString) (toString .) (eq (float64 .) (floor .))) }}
{{- end }}
{{- join "," $out }}
{{- end }}
