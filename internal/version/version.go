// Package version holds the release string stamped into both binaries at
// build time (make sets it from git describe), so --version and the logs
// name exactly the build that ran.
package version

// Version is overwritten by the linker: -X github.com/qubes-netvm/qnet/internal/version.Version=….
var Version = "dev"
