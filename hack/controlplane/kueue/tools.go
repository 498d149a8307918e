//go:build tools

// Package tools records the Kueue command this module builds (a peer in bench/).
package tools

import _ "sigs.k8s.io/kueue/cmd/kueue"
