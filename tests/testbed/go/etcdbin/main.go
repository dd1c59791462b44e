// Command etcd is the test bed's etcd server, built from the published
// go.etcd.io/etcd/server/v3 module (its own go.mod has replace directives,
// so it cannot be installed with `go install pkg@version`).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
