#!/bin/sh
# Fills a folder with the secrets deploy/compose.yaml reads (random passwords and keys), once. Existing
# files are kept. The TLS certificate and key (tls.crt, tls.key) are yours to put there.
set -eu
dir=${1:-deploy/secrets}
mkdir -p "$dir"
chmod 700 "$dir"
random() { head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | cut -c1-40; }
keep() { [ -s "$dir/$1" ] || { printf '%s' "$2" > "$dir/$1"; chmod 600 "$dir/$1"; }; }
keep secret_key "$(random)$(random)"
keep postgres_password "$(random)"
keep redis_password "$(random)"
keep minio_user "studio"
keep minio_password "$(random)"
keep metrics_token "$(random)"
keep database_url "postgresql://studio:$(cat "$dir/postgres_password")@postgres:5432/studio"
keep redis_url "redis://:$(cat "$dir/redis_password")@redis:6379/0"
echo "Secrets are in $dir. Add tls.crt and tls.key (your certificate and its key) before starting."
