// Command compose-validate loads a Compose file exactly as `docker compose` does (the same
// library, github.com/compose-spec/compose-go/v2), and prints the resolved model, like
// `docker compose config`. It needs no Docker engine.
//
//	compose-validate [-env-file FILE]... [-os-env] [-format json|yaml] [-strict] COMPOSE_FILE...
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
	flag.Parse()
	if flag.NArg() == 0 {
		fail(2, "usage: compose-validate [-env-file FILE]... [-os-env] [-format json|yaml] COMPOSE_FILE...")
	}
	if *format != "json" && *format != "yaml" {
		fail(2, "unknown -format %q (json or yaml)", *format)
	}

	files := make([]string, flag.NArg())
	for i, f := range flag.Args() {
		abs, err := filepath.Abs(f)
		if err != nil {
			fail(2, "%s: %v", f, err)
		}
		files[i] = abs
	}

	collector := &warningCollector{}
	logrus.AddHook(collector)
	logrus.SetOutput(os.Stderr)

	opts := []cli.ProjectOptionsFn{
		// The project directory is the first file's directory, as for docker compose.
		cli.WithWorkingDirectory(filepath.Dir(files[0])),
		cli.WithName(*projectName),
	}
	if *osEnv {
		opts = append(opts, cli.WithOsEnv)
	}
	opts = append(opts,
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	if len(envFiles) == 0 {
		// Without -env-file, no implicit .env either: only what is asked for.
		opts = append(opts, cli.WithDiscardEnvFile)
	}
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
