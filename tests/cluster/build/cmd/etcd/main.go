// etcd built at the version that k8s.io/kubernetes pins (see go.mod), for the local test cluster.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
