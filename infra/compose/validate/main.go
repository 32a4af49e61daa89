// Command compose-validate loads a Compose file exactly as `docker compose` does (the same
// library, github.com/compose-spec/compose-go/v2), and prints the resolved model, like
// `docker compose config`. It needs no Docker engine.
//
//	compose-validate [-env-file FILE]... [-os-env] [-project-directory DIR] [-format json|yaml]
//	                 [-strict=false] COMPOSE_FILE...
//
// Loading includes the Compose Specification JSON-schema validation, interpolation of
// ${VAR} references, normalisation, path resolution (bind mounts and build contexts become
// absolute), the consistency checks (services, volumes and networks referenced exist,
// depends_on has no cycles) and resolution of the services' env_file entries. Variables
// come only from the -env-file files unless -os-env is given, so the output is
// reproducible. With -strict (the default) any warning compose-go logs, such as a
// variable that is not set, is an error. Exit status: 0 valid, 1 invalid, 2 usage.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/sirupsen/logrus"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// warningCollector records every warning (and worse) compose-go logs while loading.
type warningCollector struct {
	mu       sync.Mutex
	messages []string
}

func (w *warningCollector) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (w *warningCollector) Fire(e *logrus.Entry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.messages = append(w.messages, e.Message)
	return nil
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "compose-validate: "+format+"\n", args...)
	os.Exit(code)
}

func main() {
	var envFiles multiFlag
	flag.Var(&envFiles, "env-file", "env file with the variables to interpolate (repeatable; later files win)")
	osEnv := flag.Bool("os-env", false, "also take variables from the process environment (they win, as in docker compose)")
	format := flag.String("format", "json", "output format: json or yaml")
	strict := flag.Bool("strict", true, "treat warnings logged while loading (e.g. unset variables) as errors")
	projectName := flag.String("project-name", "", "project name (default: the file's top-level name)")
	projectDir := flag.String("project-directory", "", "directory relative paths resolve against (default: the first file's directory)")
	flag.Parse()
	if flag.NArg() == 0 {
		fail(2, "usage: compose-validate [-env-file FILE]... [-os-env] [-format json|yaml] COMPOSE_FILE...")
	}
	if *format != "json" && *format != "yaml" {
		fail(2, "unknown -format %q (json or yaml)", *format)
	}

	files := make([]string, flag.NArg())
	var err error
	for i, f := range flag.Args() {
		var abs string
		abs, err = filepath.Abs(f)
		if err != nil {
			fail(2, "%s: %v", f, err)
		}
		files[i] = abs
	}

	collector := &warningCollector{}
	logrus.AddHook(collector)
	logrus.SetOutput(os.Stderr)

	// The project directory is the first file's directory, as for docker compose.
	workingDir := filepath.Dir(files[0])
	if *projectDir != "" {
		if workingDir, err = filepath.Abs(*projectDir); err != nil {
			fail(2, "%s: %v", *projectDir, err)
		}
	}
	opts := []cli.ProjectOptionsFn{
		cli.WithWorkingDirectory(workingDir),
		cli.WithName(*projectName),
	}
	if *osEnv {
		opts = append(opts, cli.WithOsEnv)
	}
	// Without -env-file no implicit .env is read either: only what is asked for.
	if len(envFiles) > 0 {
		opts = append(opts, cli.WithEnvFiles(envFiles...), cli.WithDotEnv)
	}
	opts = append(opts,
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	options, err := cli.NewProjectOptions(files, opts...)
	if err != nil {
		fail(1, "options: %v", err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(1, "invalid: %v", err)
	}
	project, err = project.WithServicesEnvironmentResolved(false)
	if err != nil {
		fail(1, "invalid: %v", err)
	}
	if err := project.CheckContainerNameUnicity(); err != nil {
		fail(1, "invalid: %v", err)
	}
	if *strict && len(collector.messages) > 0 {
		fail(1, "invalid (strict): %s", strings.Join(collector.messages, "; "))
	}

	var out []byte
	if *format == "yaml" {
		out, err = project.MarshalYAML()
	} else {
		out, err = project.MarshalJSON()
	}
	if err != nil {
		fail(1, "marshal: %v", err)
	}
	os.Stdout.Write(out)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		os.Stdout.Write([]byte("\n"))
	}
}
