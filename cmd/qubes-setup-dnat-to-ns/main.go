// Command qubes-setup-dnat-to-ns points the virtual DNS addresses of a Qubes
// network qube at the real DNS servers by DNAT.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/qubes-netvm/qnet/pkg/version"
)

func main() {
	fs := pflag.NewFlagSet("qubes-setup-dnat-to-ns", pflag.ContinueOnError)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == pflag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(1)
	}
	if *showVersion {
		fmt.Println("qubes-setup-dnat-to-ns", version.Version)
		return
	}
	fmt.Fprintln(os.Stderr, "qubes-setup-dnat-to-ns: not implemented yet")
	os.Exit(1)
}
