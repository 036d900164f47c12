// Package vmtest holds the tests that need a stock distribution kernel
// (flowtables, module autoload); they carry the build tag vmtest and run
// inside a qemu VM booted by run.sh.
package vmtest
