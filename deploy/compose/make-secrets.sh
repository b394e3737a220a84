#!/usr/bin/env bash
# Development secrets for docker-compose.yml: one master key (version 1) and a
# self-signed CA with a server certificate for localhost. Never use these in
# production: keep master keys in a secret manager and use your own PKI.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p secrets
umask 077
if [ ! -f secrets/master.keys ]; then
  echo "1:$(head -c 32 /dev/urandom | base64)" > secrets/master.keys
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj "/CN=credvault dev CA" -keyout secrets/ca.key -out secrets/ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=localhost" -keyout secrets/server.key -out secrets/server.csr 2>/dev/null
openssl x509 -req -in secrets/server.csr -CA secrets/ca.pem -CAkey secrets/ca.key \
  -CAcreateserial -days 30 -out secrets/server.pem \
  -extfile <(printf "subjectAltName=DNS:localhost,IP:127.0.0.1") 2>/dev/null
# The containers run as a non-root user: let it read the files it is given.
chmod 644 secrets/server.pem secrets/ca.pem secrets/server.key secrets/master.keys
echo "secrets written to $(pwd)/secrets"
