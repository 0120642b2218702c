{{/* Names, labels and shared fragments. */}}

{{- define "laxai.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart> unless one name contains the other; 63 chars at most. */}}
{{- define "laxai.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else if hasPrefix .Release.Name $name -}}
{{- /* release "laxai" of chart "laxai-training": laxai-training, not laxai-laxai-training */ -}}
{{- $name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "laxai.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. Call with (dict "ctx" $ "component" "operator"). */}}
{{- define "laxai.labels" -}}
helm.sh/chart: {{ include "laxai.chart" .ctx }}
{{ include "laxai.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: laxai-training
{{- end -}}

{{- define "laxai.selectorLabels" -}}
app.kubernetes.io/name: {{ include "laxai.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "laxai.operator.fullname" -}}
{{- printf "%s-operator" (include "laxai.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "laxai.api.fullname" -}}
{{- printf "%s-api" (include "laxai.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "laxai.operator.serviceAccountName" -}}
{{- default (include "laxai.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- end -}}

{{- define "laxai.api.serviceAccountName" -}}
{{- default (include "laxai.api.fullname" .) .Values.api.serviceAccount.name -}}
{{- end -}}

{{- define "laxai.apiKeysSecretName" -}}
{{- default (printf "%s-api-keys" (include "laxai.fullname" .)) .Values.api.auth.existingSecret -}}
{{- end -}}

{{- define "laxai.storageClaimName" -}}
{{- default (printf "%s-storage" (include "laxai.fullname" .)) .Values.storage.persistentVolumeClaim.existingClaim -}}
{{- end -}}

{{/* Namespace where the API creates TrainingJobs. */}}
{{- define "laxai.api.namespace" -}}
{{- default .Release.Namespace .Values.api.namespace -}}
{{- end -}}

{{/* Every namespace where trainer pods run, comma separated, release namespace first, no duplicates. */}}
{{- define "laxai.jobNamespaces" -}}
{{- $all := list .Release.Namespace (include "laxai.api.namespace" .) -}}
{{- range .Values.watch.namespaces -}}
{{- $all = append $all . -}}
{{- end -}}
{{- $all | uniq | join "," -}}
{{- end -}}

{{/* repository:tag or repository@digest. Call with (dict "image" .Values.image "ctx" $). */}}
{{- define "laxai.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "laxai.imagePullSecrets" -}}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end -}}

{{/* Settings checked across values that the JSON schema cannot express. */}}
{{- define "laxai.validate" -}}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.leaderElection.enabled) -}}
{{- fail "operator.replicas > 1 needs operator.leaderElection.enabled=true: two kopf operators without a leader gate race on the same TrainingJobs" -}}
{{- end -}}
{{- if .Values.storage.persistentVolumeClaim.enabled -}}
{{- if ne (include "laxai.jobNamespaces" .) .Release.Namespace -}}
{{- fail "storage.persistentVolumeClaim needs every job in the release namespace (a claim cannot be mounted across namespaces): unset watch.namespaces and api.namespace" -}}
{{- end -}}
{{- if not (hasPrefix "/" .Values.storage.root) -}}
{{- fail (printf "storage.persistentVolumeClaim.enabled needs storage.root to be an absolute path where the claim is mounted, not %q" .Values.storage.root) -}}
{{- end -}}
{{- else if not (hasPrefix "gs://" .Values.storage.root) -}}
{{- fail (printf "storage.root %q is a local path: set storage.persistentVolumeClaim.enabled=true so the API and trainer pods share it, or use gs://BUCKET" .Values.storage.root) -}}
{{- end -}}
{{- end -}}

{{/* Volumes and mounts shared by the API pod: /tmp (the root filesystem is read-only), storage, GCS key. */}}
{{- define "laxai.gcsMountPath" -}}/var/run/secrets/laxai/gcs{{- end -}}

{{/* Every trainer ServiceAccount name (the shared one, then each tenant's), as a JSON list. */}}
{{- define "laxai.trainerServiceAccounts" -}}
{{- $names := list .Values.trainer.serviceAccount.name -}}
{{- range $tenant, $t := .Values.tenants -}}
{{- with $t.serviceAccount -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- end -}}
{{- $names | uniq | toJson -}}
{{- end -}}

{{/* LAXAI_TENANT_CREDENTIALS: tenant -> {serviceAccount, gcsCredentialsSecret, wandbSecret, wandbProject, wandbEntity}. */}}
{{- define "laxai.tenantCredentials" -}}
{{- $all := dict -}}
{{- range $tenant, $t := .Values.tenants -}}
{{- $c := dict -}}
{{- with $t.serviceAccount }}{{ $_ := set $c "serviceAccount" .name }}{{ end -}}
{{- with $t.gcsCredentialsSecret }}{{ $_ := set $c "gcsCredentialsSecret" . }}{{ end -}}
{{- with $t.wandb -}}
{{- with .secret }}{{ $_ := set $c "wandbSecret" . }}{{ end -}}
{{- with .project }}{{ $_ := set $c "wandbProject" . }}{{ end -}}
{{- with .entity }}{{ $_ := set $c "wandbEntity" . }}{{ end -}}
{{- end -}}
{{- $_ := set $all $tenant $c -}}
{{- end -}}
{{- $all | toJson -}}
{{- end -}}

{{/* An optional integer value as a quoted env value: "" for null (int avoids 1e+06 for big numbers). */}}
{{- define "laxai.optionalInt" -}}
{{- if kindIs "invalid" . -}}""{{- else -}}{{ int64 . | toString | quote }}{{- end -}}
{{- end -}}
