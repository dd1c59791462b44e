// Command k8s is dr's test-bed control plane: one binary that acts as
// kube-apiserver, kube-controller-manager or kube-scheduler, chosen by the
// name it is called under (a symlink) or by its first argument.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	_ "time/tzdata" // CronJob time zones need the zone database in the binary

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"

	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

// personalities maps a component name to the constructor of its command.
// Only the chosen constructor runs, so each process registers the feature
// gates and flags of one component only.
var personalities = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": kcm.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
}

func names() []string {
	out := make([]string, 0, len(personalities))
	for n := range personalities {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func main() {
	name := filepath.Base(os.Args[0])
	if _, known := personalities[name]; !known && len(os.Args) > 1 {
		// "k8s kube-apiserver --flag…": shift so the component sees a normal argv.
		name = os.Args[1]
		os.Args = os.Args[1:]
	}
	build, known := personalities[name]
	if !known {
		fmt.Fprintf(os.Stderr, "usage: k8s {%v} [flags]\n", names())
		os.Exit(2)
	}
	os.Exit(cli.Run(build()))
}
