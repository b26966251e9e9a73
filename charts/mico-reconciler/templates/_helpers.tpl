{{/* Names, labels and the pieces several templates share. */}}

{{- define "mico-reconciler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mico-reconciler.fullname" -}}
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

{{- define "mico-reconciler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mico-reconciler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mico-reconciler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mico-reconciler.labels" -}}
helm.sh/chart: {{ include "mico-reconciler.chart" . }}
{{ include "mico-reconciler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | replace "+" "_" | quote }}
app.kubernetes.io/component: reconciler
app.kubernetes.io/part-of: mico
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mico-reconciler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mico-reconciler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Lease the daemon holds, by name, so RBAC can grant exactly it. */}}
{{- define "mico-reconciler.leaseName" -}}
{{- default (include "mico-reconciler.fullname" .) .Values.leaseName }}
{{- end }}

{{- define "mico-reconciler.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "mico-reconciler.persistent" -}}
{{- if .Values.persistence.enabled }}true{{ end }}
{{- end }}

{{- define "mico-reconciler.claimName" -}}
{{- default (printf "%s-state" (include "mico-reconciler.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/*
The RBAC rules of one scope (workload, build or lease) from files/rbac-rules.yaml, which
`make chart-rbac` generates from reconciler/cluster/permissions.py: `why` is dropped,
`strimziOnly` rules are kept only with topics: strimzi, and `leaseOnly` rules name the Lease.
*/}}
{{- define "mico-reconciler.rules" -}}
{{- $root := index . 0 }}
{{- $scope := index . 1 }}
{{- $all := $root.Files.Get "files/rbac-rules.yaml" | fromYaml }}
{{- if not (hasKey $all $scope) }}
{{- fail (printf "files/rbac-rules.yaml has no scope %q (run `make chart-rbac`)" $scope) }}
{{- end }}
{{- range $rule := index $all $scope }}
{{- if or (not $rule.strimziOnly) (eq $root.Values.topics "strimzi") }}
- apiGroups: {{ $rule.apiGroups | toJson }}
  resources: {{ $rule.resources | toJson }}
  {{- if $rule.leaseOnly }}
  resourceNames: [{{ include "mico-reconciler.leaseName" $root | quote }}]
  {{- end }}
  verbs: {{ $rule.verbs | toJson }}
{{- end }}
{{- end }}
{{- end }}

{{/* Values that cannot go together; checked once, from the Deployment. */}}
{{- define "mico-reconciler.validate" -}}
{{- if not .Values.repo }}
{{- fail "repo is required: the config repository URL (https, ssh, git or file), without credentials" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection) }}
{{- fail "replicaCount > 1 needs leaderElection: true (two replicas would reconcile at once)" }}
{{- end }}
{{- if and .Values.rbac.create (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "rbac.create with serviceAccount.create=false needs serviceAccount.name: the Roles would go to the namespace's default ServiceAccount, and so to every pod using it" }}
{{- end }}
{{- /* the ssh forms values.schema.json lets through for repo */}}
{{- if and (regexMatch "^(ssh://|[^/:@]+@[^/:]+:)" .Values.repo) (not .Values.sshKey.knownHosts) (not .Values.sshKey.acceptNewHostKeys) }}
{{- fail "an ssh repo needs sshKey.knownHosts (the server's host keys, e.g. from `ssh-keyscan`, checked out of band), or sshKey.acceptNewHostKeys: true to trust the first key seen" }}
{{- end }}
{{- if and .Values.sshKey.knownHosts .Values.sshKey.acceptNewHostKeys }}
{{- fail "sshKey: give knownHosts or acceptNewHostKeys, not both (pinned keys or trust on first use)" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (include "mico-reconciler.persistent" .) }}
{{- fail "replicaCount > 1 cannot share the state volume (ReadWriteOnce, one SQLite writer): use persistence.enabled=false or one replica" }}
{{- end }}
{{- end }}

{{/* The ConfigMap with what the daemon trusts: the ssh server's host keys, the https server's CA. */}}
{{- define "mico-reconciler.trustName" -}}
{{- printf "%s-git-trust" (include "mico-reconciler.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
