// Command etcd builds the etcd server from its published module (the root module's main is a thin wrapper).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
