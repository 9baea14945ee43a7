{{/* Names ------------------------------------------------------------------------------------ */}}

{{- define "unmix.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object's name; at most 47 characters so "<prefix>-controller-metrics" fits 63. */}}
{{- define "unmix.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 47 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "unmix.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels ----------------------------------------------------------------------------------- */}}

{{- define "unmix.selectorLabels" -}}
app.kubernetes.io/name: {{ include "unmix.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "unmix.labels" -}}
helm.sh/chart: {{ include "unmix.chart" . }}
{{ include "unmix.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: unmix
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Component labels: (dict "ctx" $ "component" "ingress") */}}
{{- define "unmix.componentSelectorLabels" -}}
{{ include "unmix.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "unmix.componentLabels" -}}
{{ include "unmix.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Service accounts ------------------------------------------------------------------------- */}}

{{/* (dict "ctx" $ "component" "ingress") -> the ServiceAccount name of that component */}}
{{- define "unmix.serviceAccountName" -}}
{{- $v := index .ctx.Values .component }}
{{- if $v.serviceAccount.create }}
{{- default (printf "%s-%s" (include "unmix.fullname" .ctx) .component) $v.serviceAccount.name }}
{{- else }}
{{- required (printf "%s.serviceAccount.name is required when %s.serviceAccount.create is false" .component .component) $v.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Images ----------------------------------------------------------------------------------- */}}

{{/* An image reference from {repository, tag, digest}: repo:tag, or repo:tag@sha256:… with a digest. */}}
{{- define "unmix.image" -}}
{{- $tag := default .ctx.Chart.AppVersion .image.tag | toString }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* Secrets ---------------------------------------------------------------------------------- */}}

{{- define "unmix.whatsappSecretName" -}}
{{- default (printf "%s-whatsapp" (include "unmix.fullname" .)) .Values.whatsapp.existingSecret }}
{{- end }}

{{- define "unmix.objectStoreSecretName" -}}
{{- default (printf "%s-object-store" (include "unmix.fullname" .)) .Values.objectStore.existingSecret }}
{{- end }}

{{- define "unmix.natsSecretName" -}}
{{- default (printf "%s-nats" (include "unmix.fullname" .)) .Values.nats.existingSecret }}
{{- end }}

{{/* A NATS credentials file is mounted (nats.auth.mode=creds). */}}
{{- define "unmix.natsAuth" -}}
{{- if eq .Values.nats.auth.mode "creds" }}true{{ end }}
{{- end }}

{{/* Per-component NATS users (nats.auth.mode=users): the Secret with their passwords. */}}
{{- define "unmix.natsUsersSecretName" -}}
{{- default (printf "%s-nats-users" (include "unmix.fullname" .)) .Values.nats.auth.existingSecret }}
{{- end }}

{{/* (dict "ctx" $ "user" "webhook") → the user's password, generated once and kept. */}}
{{- define "unmix.natsPassword" -}}
{{- include "unmix.keptRandom" (dict "ctx" .ctx "secret" (include "unmix.natsUsersSecretName" .ctx) "key" .user "value" "") }}
{{- end }}

{{/* A list of subjects in the NATS server's configuration syntax (toJson would escape ">"). */}}
{{- define "unmix.natsList" -}}
[{{ range $i, $s := . }}{{ if $i }}, {{ end }}"{{ $s }}"{{ end }}]
{{- end }}

{{/* (dict "ctx" $ "user" "webhook") → NATS_USER and NATS_INBOX_PREFIX of that component (mode users). */}}
{{- define "unmix.env.natsUser" -}}
{{- if eq .ctx.Values.nats.auth.mode "users" }}
{{- $perms := .ctx.Files.Get "files/nats-permissions.json" | fromJson }}
NATS_USER: {{ index .ctx.Values.nats.auth.users .user | quote }}
NATS_INBOX_PREFIX: {{ (index $perms .user).inboxPrefix | quote }}
{{- end }}
{{- end }}

{{/* (dict "ctx" $ "user" "webhook") → the NATS_PASSWORD secret reference, as a list for unmix.secretEnvList. */}}
{{- define "unmix.natsPasswordEnv" -}}
{{- if eq .ctx.Values.nats.auth.mode "users" }}
{{- list (dict "name" "NATS_PASSWORD" "secret" (include "unmix.natsUsersSecretName" .ctx) "key" .user) | toJson }}
{{- else }}[]{{ end }}
{{- end }}

{{- define "unmix.keysSecretName" -}}
{{- default (printf "%s-keys" (include "unmix.fullname" .)) .Values.keys.existingSecret }}
{{- end }}

{{- define "unmix.leaseName" -}}
{{- default (printf "%s-controller" (include "unmix.fullname" .)) .Values.controller.leaderElection.leaseName }}
{{- end }}

{{/*
A secret value the chart generates once and keeps: the value given, else the one already in the
cluster's Secret (lookup; empty under `helm template` and --dry-run), else a new random one.
(dict "ctx" $ "secret" "<name>" "key" "<key>" "value" "<given>")
*/}}
{{- define "unmix.keptRandom" -}}
{{- if .value }}
{{- .value }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret }}
{{- if and $existing (hasKey ($existing.data | default dict) .key) }}
{{- index $existing.data .key | b64dec }}
{{- else }}
{{- randAlphaNum 40 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pods ------------------------------------------------------------------------------------- */}}

{{/* Preferred anti-affinity spreading a component's pods over nodes: (dict "ctx" $ "component" "x") */}}
{{- define "unmix.affinity" -}}
{{- $v := index .ctx.Values .component }}
{{- if $v.affinity }}
{{- toYaml $v.affinity }}
{{- else }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "unmix.componentSelectorLabels" . | nindent 12 }}
{{- end }}
{{- end }}

{{/* Probes against a named port: (dict "ctx" $ "port" "http") */}}
{{- define "unmix.probes" -}}
{{- $p := .ctx.Values.probes }}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: {{ $p.startup.periodSeconds }}
  timeoutSeconds: {{ $p.startup.timeoutSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  periodSeconds: {{ $p.readiness.periodSeconds }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: {{ $p.liveness.periodSeconds }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
{{- end }}

{{/* Environment ------------------------------------------------------------------------------ */}}

{{/* The controller's identity in its Lease: the pod name. */}}
{{- define "unmix.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}

{{/* Volumes every pod has: a small writable /tmp (the root filesystem is read-only). */}}
{{- define "unmix.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}
