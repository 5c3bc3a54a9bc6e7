{{/* Object name prefix: the release name, or "<release>-omniroute". */}}
{{- define "omniroute.fullname" -}}
{{- if contains "omniroute" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-omniroute" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels; call with (dict "root" $ "component" "edge"), component optional. */}}
{{- define "omniroute.selectorLabels" -}}
app.kubernetes.io/name: omniroute
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "omniroute.labels" -}}
{{ include "omniroute.selectorLabels" . }}
app.kubernetes.io/part-of: omniroute
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/* Image of a component: (dict "root" $ "component" "edge"). */}}
{{- define "omniroute.image" -}}
{{- printf "%somniroute-%s:%s" .root.Values.image.repositoryPrefix .component (.root.Values.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/* The pod spec parts every component shares. */}}
{{- define "omniroute.podCommon" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "omniroute.selectorLabels" . | nindent 8 }}
{{- end -}}

{{/* Environment from the Secret: (dict "root" $ "keys" list "optional" list), optional
     keys may be absent from the Secret. */}}
{{- define "omniroute.secretEnv" -}}
{{- range .keys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $.root.Values.secrets.name }}
      key: {{ . }}
{{- end }}
{{- range .optional }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $.root.Values.secrets.name }}
      key: {{ . }}
      optional: true
{{- end }}
{{- end -}}

{{/* Addresses of the services a component calls: (dict "root" $ "names" list). */}}
{{- define "omniroute.serviceAddrs" -}}
{{- $fullname := include "omniroute.fullname" .root -}}
{{- range .names }}
- name: OMNIROUTE_{{ upper . }}_ADDR
  value: {{ $fullname }}-{{ . }}:{{ (index $.root.Values .).port }}
{{- end }}
{{- end -}}

{{/* Container parts every component shares. */}}
{{- define "omniroute.containerCommon" -}}
envFrom:
  - secretRef:
      name: {{ .root.Values.providerKeysSecret }}
      optional: true
securityContext:
  {{- toYaml .root.Values.containerSecurityContext | nindent 2 }}
volumeMounts:
  - name: config
    mountPath: /etc/omniroute
    readOnly: true
  - name: data
    mountPath: /var/lib/omniroute
{{- end -}}

{{- define "omniroute.volumes" -}}
volumes:
  - name: config
    configMap:
      name: {{ include "omniroute.fullname" .root }}-config
  - name: data
    emptyDir: {}
{{- end -}}
