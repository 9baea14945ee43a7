{{/*
One Deployment of the chart: (dict "ctx" $ "component" "ingress" "values" .Values.ingress
"image" .Values.ingress.image "ports" (list (dict "name" "http" "port" 8080)) "probePort" "http"
"env" "<yaml list of EnvVar>" "automountToken" <bool> "replicas" <int or nil>)
*/}}
{{- define "unmix.deployment" -}}
{{- $ := .ctx }}
{{- $v := .values }}
{{- $sel := dict "ctx" $ "component" .component }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "unmix.fullname" $ }}-{{ .component }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "unmix.componentLabels" $sel | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" .replicas) }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "unmix.componentSelectorLabels" $sel | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "unmix.componentLabels" $sel | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "unmix.checksum" $sel }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "unmix.serviceAccountName" $sel }}
      automountServiceAccountToken: {{ .automountToken }}
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      securityContext:
        {{- toYaml $.Values.podSecurityContext | nindent 8 }}
      affinity:
        {{- include "unmix.affinity" $sel | trim | nindent 8 }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .container }}
          image: {{ include "unmix.image" (dict "ctx" $ "image" .image) | quote }}
          imagePullPolicy: {{ .image.pullPolicy }}
          ports:
            {{- range .ports }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ include "unmix.fullname" $ }}-common
            - configMapRef:
                name: {{ include "unmix.fullname" $ }}-{{ .component }}
          env:
            {{- .env | trim | nindent 12 }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- include "unmix.probes" (dict "ctx" $ "port" .probePort) | trim | nindent 10 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $.Values.securityContext | nindent 12 }}
          terminationMessagePolicy: FallbackToLogsOnError
          {{- with .preStopSleepSeconds }}
          # keep serving while the endpoint is removed from Services and Gateways, then drain
          lifecycle:
            preStop:
              sleep:
                seconds: {{ . }}
          {{- end }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if include "unmix.natsAuth" $ }}
            - name: nats-creds
              mountPath: /etc/unmix/nats
              readOnly: true
            {{- end }}
      volumes:
        {{- include "unmix.tmpVolume" $ | nindent 8 }}
        {{- if include "unmix.natsAuth" $ }}
        - name: nats-creds
          secret:
            secretName: {{ include "unmix.natsSecretName" $ }}
            defaultMode: 0440
            items:
              - key: {{ $.Values.nats.credsKey }}
                path: {{ $.Values.nats.credsKey }}
        {{- end }}
{{- end }}

{{/* EnvVars from Secret keys: a list of (dict "name" "ENV" "secret" "<Secret>" "key" "<key>"). */}}
{{- define "unmix.secretEnvList" -}}
{{- range . }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end }}
{{- end }}
