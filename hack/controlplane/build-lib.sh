# Sourced by build.sh and build-realnode.sh: builds a command set of one pinned Go
# module into $SHUNTER_BIN_DIR, and only when the module's go.mod/go.sum (or the
# build settings) changed or a binary is missing. A stamp holding that hash sits
# beside the binaries.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/goenv.sh"
mkdir -p "$SHUNTER_BIN_DIR"

# build_module DIR STAMP LDFLAGS NAME=PACKAGE...
#   Optional environment: TAGS (Go build tags), CGO (1 to enable cgo).
build_module() {
  local dir=$1 stamp_name=$2 ldflags=$3; shift 3
  local stamp="$SHUNTER_BIN_DIR/.$stamp_name.stamp"
  local want
  # Build settings other than the defaults are part of the stamp too.
  want=$(cat "$here/$dir/go.mod" "$here/$dir/go.sum" \
    <([ -z "${TAGS:-}${CGO:-}" ] || echo "tags=${TAGS:-} cgo=${CGO:-}") | sha256sum | cut -d' ' -f1)
  local missing=0 spec
  for spec in "$@"; do [ -x "$SHUNTER_BIN_DIR/${spec%%=*}" ] || missing=1; done
  if [ "$missing" = 0 ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "build: $stamp_name is up to date"
    return
  fi
  local start=$SECONDS
  for spec in "$@"; do
    echo "build: ${spec%%=*} from ${spec#*=}"
    (cd "$here/$dir" && CGO_ENABLED=${CGO:-0} nice -n 10 go build -trimpath -tags "${TAGS:-}" \
      -ldflags "$ldflags" -o "$SHUNTER_BIN_DIR/${spec%%=*}" "${spec#*=}")
  done
  echo "$want" > "$stamp"
  echo "build: $stamp_name took $((SECONDS - start))s"
}

k8s_version=$(sed -nE 's/^require k8s\.io\/kubernetes (v[0-9.]+)$/\1/p' "$here/kubernetes/go.mod")
ldflags_k8s="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$k8s_version" | cut -d. -f2)"
