//go:build tools

// Package tools pins KWOK, which simulates nodes and pod lifecycles for the local clusters.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
