// Command buildex builds example apps by running the build commands of their
// verge.toml manifests, the same commands `verge dev` runs before serving.
//
//	go run ./scripts/buildex [-timeout 10m] [APPDIR...]
//
// With no APPDIR it builds every examples/*/ directory that holds a verge.toml
// (run it from the repository root). Each command runs with `sh -c` in the
// manifest's directory. Every app is attempted; the exit status is non-zero
// when any build failed, and each failure names its app and command.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/verge-edge/verge"
)

// app is one example directory and its manifest, read and validated the
// way verge reads it.
type app struct {
	Dir      string // the directory as given, holding verge.toml
	Manifest *verge.Manifest
}

func main() {
	timeout := flag.Duration("timeout", 10*time.Minute, "time limit for each build command")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./scripts/buildex [-timeout D] [APPDIR...]\n"+
			"Runs the build commands of each app's verge.toml (default: every examples/*/ app).\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	dirs := flag.Args()
	if len(dirs) == 0 {
		var err error
		if dirs, err = exampleDirs("examples"); err != nil {
			fatalf("%v", err)
		}
		if len(dirs) == 0 {
			fatalf("no examples/*/verge.toml found: run buildex from the repository root")
		}
	}

	var failed []string
	for _, dir := range dirs {
		a, err := loadApp(dir)
		if err == nil {
			err = buildApp(context.Background(), a, *timeout, os.Stdout, os.Stderr)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "buildex: %v\n", err)
			failed = append(failed, dir)
		}
	}
	if len(failed) > 0 {
		fatalf("%d of %d examples failed to build: %s", len(failed), len(dirs), strings.Join(failed, ", "))
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "buildex: "+format+"\n", args...)
	os.Exit(1)
}

// exampleDirs lists the subdirectories of root that hold a verge.toml, sorted.
func exampleDirs(root string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(root, "*", "verge.toml"))
	if err != nil {
		return nil, err
	}
	dirs := make([]string, 0, len(matches))
	for _, m := range matches {
		dirs = append(dirs, filepath.Dir(m))
	}
	sort.Strings(dirs)
	return dirs, nil
}

// loadApp reads dir/verge.toml.
func loadApp(dir string) (*app, error) {
	m, err := verge.LoadManifest(filepath.Join(dir, verge.ManifestFile))
	if err != nil {
		return nil, err
	}
	return &app{Dir: dir, Manifest: m}, nil
}

// buildApp runs each distinct build command of a once, in manifest order,
// then checks that every module it was meant to produce exists. It stops at
// the app's first failure: later functions often share the failed output.
func buildApp(ctx context.Context, a *app, timeout time.Duration, stdout, stderr io.Writer) error {
	ran := make(map[string]bool)
	for _, f := range a.Manifest.Functions {
		if f.Build == "" {
			continue
		}
		if !ran[f.Build] {
			ran[f.Build] = true
			fmt.Fprintf(stdout, "buildex: %s: %s\n", a.Manifest.Name, f.Build)
			if err := run(ctx, a.Dir, f.Build, timeout, stdout, stderr); err != nil {
				return fmt.Errorf("example %s (%s), function %q: build command %q failed: %w",
					a.Manifest.Name, a.Dir, f.Name, f.Build, err)
			}
		}
		if _, err := os.Stat(f.Module); err != nil {
			// The module as the manifest names it (both paths are absolute:
			// Rel cannot fail), and where that is from here.
			rel, _ := filepath.Rel(a.Manifest.Dir, f.Module)
			return fmt.Errorf("example %s (%s), function %q: build command %q succeeded but module %s is missing: "+
				"make the command write %q relative to the manifest", a.Manifest.Name, a.Dir, f.Name, f.Build, filepath.Join(a.Dir, rel), rel)
		}
	}
	return nil
}

func run(ctx context.Context, dir, command string, timeout time.Duration, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Dir = dir
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	killGroupOnCancel(cmd)
	// Whatever escapes the kill must not hold CI forever on our pipes.
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %v", timeout)
	}
	return err
}
