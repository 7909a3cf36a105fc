//go:build tools

// Package tools pins vegeta, the open-loop HTTP load generator the API benchmarks drive
// (benchmarks/license_bench.py): a compiled client, so that the load's own CPU on the same
// two cores stays small next to the server's.
package tools

import _ "github.com/tsenart/vegeta/v12"
