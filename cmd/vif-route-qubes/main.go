// Command vif-route-qubes is the Xen hotplug script of a Qubes network qube:
// it configures a client qube's backend interface in routed mode.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/qubes-netvm/qnet/pkg/version"
)

func main() {
	fs := pflag.NewFlagSet("vif-route-qubes", pflag.ContinueOnError)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == pflag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(1)
	}
	if *showVersion {
		fmt.Println("vif-route-qubes", version.Version)
		return
	}
	fmt.Fprintln(os.Stderr, "vif-route-qubes: not implemented yet")
	os.Exit(1)
}
