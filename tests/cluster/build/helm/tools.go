//go:build tools

// Keeps helm's command package in go.mod/go.sum.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
