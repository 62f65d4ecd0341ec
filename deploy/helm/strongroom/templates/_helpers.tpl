{{/* vim: set filetype=mustache: */}}

{{- define "strongroom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, at most 63 characters (the DNS label limit); suffixed names below
("-migrate", "-backup") are cut to 52 so they stay within it too.
*/}}
{{- define "strongroom.fullname" -}}
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

{{- define "strongroom.shortname" -}}
{{- include "strongroom.fullname" . | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "strongroom.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "strongroom.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strongroom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "strongroom.labels" -}}
helm.sh/chart: {{ include "strongroom.chart" . }}
{{ include "strongroom.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: strongroom
{{- end }}

{{- define "strongroom.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "strongroom.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "strongroom.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "strongroom.databaseSecretName" -}}
{{- .Values.database.existingSecret | default (printf "%s-database" (include "strongroom.fullname" .)) }}
{{- end }}

{{- define "strongroom.runtimeDatabaseSecretName" -}}
{{- .Values.database.runtime.existingSecret | default (printf "%s-database-runtime" (include "strongroom.fullname" .)) }}
{{- end }}

{{- define "strongroom.keyringSecretName" -}}
{{- .Values.keyring.existingSecret | default (printf "%s-keyring" (include "strongroom.fullname" .)) }}
{{- end }}

{{- define "strongroom.tlsSecretName" -}}
{{- .Values.ingress.tls.secretName | default (printf "%s-tls" (include "strongroom.fullname" .)) }}
{{- end }}

{{- define "strongroom.backupClaimName" -}}
{{- .Values.backup.persistence.existingClaim | default (printf "%s-backups" (include "strongroom.fullname" .)) }}
{{- end }}

{{- define "strongroom.ledgerClaimName" -}}
{{- .Values.erasureLedger.existingClaim | default (printf "%s-erasure-ledger" (include "strongroom.fullname" .)) }}
{{- end }}

{{- define "strongroom.auditFilesClaimName" -}}
{{- .Values.auditFiles.existingClaim | default (printf "%s-audit-files" (include "strongroom.fullname" .)) }}
{{- end }}

{{/* The audit files volume (server and archive job: read-write; backup job: read-only). */}}
{{- define "strongroom.auditFilesVolume" -}}
- name: audit-files
  persistentVolumeClaim:
    claimName: {{ include "strongroom.auditFilesClaimName" . }}
{{- end }}

{{/* The erasure ledger volume (server: read-write; backup job: read-only). */}}
{{- define "strongroom.ledgerVolume" -}}
- name: erasure-ledger
  persistentVolumeClaim:
    claimName: {{ include "strongroom.ledgerClaimName" . }}
{{- end }}

{{/*
Pod-level security context shared by every Strongroom pod (server, migrate hook, backup).
UID/GID 10001 match the image's user; fsGroup makes the mounted keyring files group-readable
by that user without making them world-readable.
*/}}
{{- define "strongroom.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
# Only chown/chmod volumes when their root does not already match, so a large backup
# volume does not delay every pod start.
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context shared by every Strongroom container. */}}
{{- define "strongroom.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
privileged: false
# No setuid binaries or file capabilities may raise privileges inside the container.
allowPrivilegeEscalation: false
# Writable paths are only the emptyDir/PVC mounts below; an attacker who gets code execution
# cannot drop tools or alter the installed application.
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Environment shared by every Strongroom container, called with (dict "root" $ "login" "owner" | "runtime").
Contract names: see DESIGN.md. STRONGROOM_KEYS_DIR is set for the migration hook too (it has no keys
mounted) so that every pod resolves the same paths. The database URL is referenced from a Secret, never
written into the manifest: the schema owner's for the migration hook only, the runtime role's (a member of
strongroom_app, which cannot alter or delete audit events, nor disable the triggers) for everything else.
*/}}
{{- define "strongroom.env" -}}
{{- $root := .root -}}
- name: STRONGROOM_DATA_DIR
  value: /var/lib/strongroom
- name: STRONGROOM_KEYS_DIR
  value: {{ $root.Values.keyring.mountPath | quote }}
- name: STRONGROOM_ERASURE_LEDGER_PATH
  value: {{ printf "%s/erasure-ledger.jsonl" $root.Values.erasureLedger.mountPath | quote }}
- name: STRONGROOM_AUDIT_CHECKPOINT_SINK
  value: {{ printf "%s/checkpoints.log" $root.Values.auditFiles.mountPath | quote }}
- name: STRONGROOM_AUDIT_ARCHIVE_DIR
  value: {{ printf "%s/archive" $root.Values.auditFiles.mountPath | quote }}
- name: STRONGROOM_DATABASE_URL
  valueFrom:
    secretKeyRef:
      {{- if eq .login "owner" }}
      name: {{ include "strongroom.databaseSecretName" $root }}
      key: {{ $root.Values.database.existingSecretKey | quote }}
      {{- else }}
      name: {{ include "strongroom.runtimeDatabaseSecretName" $root }}
      key: {{ $root.Values.database.runtime.existingSecretKey | quote }}
      {{- end }}
- name: STRONGROOM_LOG_LEVEL
  value: {{ $root.Values.config.log_level | quote }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Scratch space every Strongroom pod gets; the root filesystem is read-only. */}}
{{- define "strongroom.scratchVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpDir.sizeLimit | quote }}
- name: data
  emptyDir:
    sizeLimit: {{ .Values.dataDir.sizeLimit | quote }}
{{- end }}

{{- define "strongroom.scratchVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /var/lib/strongroom
{{- end }}

{{/*
The keyring, for the pods that need keys (server, backup; not the migration hook).

The application refuses key files that the group or others can read (mode 0600 or nothing), but a
Secret volume cannot give its files to a non-root owner: they belong to root, and with fsGroup the
kubelet adds group read. So the Secret is mounted only into the "install-keys" init container, which
copies the files (as UID 10001, mode 0600) into a memory-backed emptyDir - key material never
touches the node's disk - and the server mounts that emptyDir read-only.
*/}}
{{- define "strongroom.keyringVolumes" -}}
- name: keyring-secret
  secret:
    secretName: {{ include "strongroom.keyringSecretName" . }}
    # Owner (root) and group (fsGroup 10001) read, nothing for others: readable by the init container only.
    defaultMode: 0440
- name: keyring
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}

{{- define "strongroom.keyringVolumeMount" -}}
- name: keyring
  mountPath: {{ .Values.keyring.mountPath | quote }}
  readOnly: true
{{- end }}

{{/* The init container that installs the keyring files with mode 0600 (see strongroom.keyringVolumes). */}}
{{- define "strongroom.installKeysContainer" -}}
- name: install-keys
  image: {{ include "strongroom.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  # An empty Secret leaves the glob unexpanded, so install fails and the pod does not start without keys.
  command: ["sh", "-ec", "install -m 0600 /run/strongroom/keyring-secret/* {{ .Values.keyring.mountPath }}/"]
  securityContext:
    {{- include "strongroom.containerSecurityContext" . | nindent 4 }}
  resources:
    requests:
      cpu: 10m
      memory: 16Mi
    limits:
      memory: 32Mi
  volumeMounts:
    - name: keyring-secret
      mountPath: /run/strongroom/keyring-secret
      readOnly: true
    - name: keyring
      mountPath: {{ .Values.keyring.mountPath | quote }}
{{- end }}

{{/* Scheduling settings shared by every pod. */}}
{{- define "strongroom.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Pod-spec fields every Strongroom pod carries.
enableServiceLinks is off because Kubernetes would otherwise inject Docker-link variables for
every Service in the namespace, and a Service named "strongroom" yields STRONGROOM_PORT=tcp://...,
which collides with the application's own STRONGROOM_PORT setting and makes it refuse to start.
The token is not mounted: Strongroom never talks to the Kubernetes API.
*/}}
{{- define "strongroom.podCommon" -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- include "strongroom.podSecurityContext" . | nindent 2 }}
{{- $scheduling := include "strongroom.scheduling" . | trim }}
{{- if $scheduling }}
{{ $scheduling }}
{{- end }}
{{- end }}

{{- /*
Egress shared by all Strongroom pods: DNS, and the database only. Nothing else is reachable,
so a compromised pod cannot exfiltrate to the internet or probe other services.
*/ -}}
{{- define "strongroom.networkPolicy.egress" -}}
{{- $np := .Values.networkPolicy -}}
- to:
    - namespaceSelector:
        {{- toYaml $np.dns.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml $np.dns.podSelector | nindent 8 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
- to:
    {{- if $np.database.cidrs }}
    {{- range $np.database.cidrs }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
    {{- else }}
    {{- /* A peer without namespaceSelector means the release namespace; an empty one would mean all namespaces. */}}
    - podSelector:
        {{- toYaml $np.database.podSelector | nindent 8 }}
      {{- with $np.database.namespaceSelector }}
      namespaceSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
  ports:
    - protocol: TCP
      port: {{ $np.database.port }}
{{- end }}
