# Sourced by the control-plane scripts: Go caches and built binaries live under
# ~/.cache, never in the repository; GOTOOLCHAIN=local makes a too-new `go` line fail
# loudly instead of downloading a toolchain.
export GOMODCACHE="${GOMODCACHE:-$HOME/.cache/go/mod}"
export GOCACHE="${GOCACHE:-$HOME/.cache/go/build}"
export GOTOOLCHAIN=local
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
SHUNTER_BIN_DIR="${SHUNTER_BIN_DIR:-$HOME/.cache/shunter/bin}"
export SHUNTER_BIN_DIR
