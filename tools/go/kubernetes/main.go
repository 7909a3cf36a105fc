// Command pulumi-resource-kubernetes serves the upstream pulumi-kubernetes provider.
//
// Upstream's own main package embeds schema-embed.json and terraform-mapping-embed.json,
// which `go generate` writes at release time and which are not in the module. This shim
// embeds the same files, written by scripts/toolchain.sh from the module's committed
// schema.json (with the release version set) and terraform-mapping.json, and calls the
// same entry point.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
