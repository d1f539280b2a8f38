#!/usr/bin/env bash
# Manual interop smoke test with the unmodified OpenZiti C SDK 0.29.3
# (PyPI openziti==0.6.0): enroll with the real libziti.so, load the identity
# (authenticate, list edge routers and services) and dial once (POST /sessions).
# No edge router runs yet, so the final connect is expected to fail at the router.
# Needs network access to PyPI. Usage: controller-lite/scripts/c-sdk-smoke.sh [TARGET_DIR]
set -euo pipefail
target=${1:-${CARGO_TARGET_DIR:-target}}/debug
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q openziti==0.6.0
printf 'listen = "127.0.0.1:0"\n' > "$work/c.toml"
"$target/weft-controller" run --data-dir "$work/d" --config "$work/c.toml" > "$work/log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -s "$work/d/controller.addr" ] && break; sleep 0.1; done
port=$(cut -d: -f2 < "$work/d/controller.addr")
weft() { HOME=$work "$target/weft" "$@"; }
weft login "https://localhost:$port" -u admin -p "$(cat "$work/d/admin.password")" --ca "$work/d/pki/root-ca.cert.pem"
weft edge create identity py -a dialers -o "$work/py.jwt"
weft edge create config echo-icpt intercept.v1 '{"protocols":["tcp"],"addresses":["echo.weft"],"portRanges":[{"low":80,"high":80}]}'
weft edge create service echo -a svc -c echo-icpt
weft edge create service-policy dial Dial --identity-roles '#dialers' --service-roles '#svc'
weft edge create edge-router er1 --tls "tls://localhost:1"
weft edge create edge-router-policy erp --edge-router-roles '#all' --identity-roles '#all'
weft edge create service-edge-router-policy serp --edge-router-roles '#all' --service-roles '#all'
cd "$work"
"$work/venv/bin/python" -m openziti enroll --jwt=py.jwt --identity=py.json
ZITI_LOG=4 timeout 60 "$work/venv/bin/python" - <<'PY' 2>&1 | grep -E "completed (GET|POST)|service event|RESULT" || true
import openziti
ctx = openziti.load('py.json')
try:
    ctx.connect(('echo.weft', 80))
except Exception as e:
    print("RESULT connect failed as expected without a router:", e)
PY
