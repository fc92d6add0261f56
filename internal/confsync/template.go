package confsync

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// ErrParse is wrapped by the error of a template that does not parse (a usage error);
// the message names the file and line.
var ErrParse = errors.New("confsync: template parse error")

// TemplateConfig is one template to keep rendered.
type TemplateConfig struct {
	// Source is the Go text/template file.
	Source string
	// Destination is the file written with the output. It is replaced atomically (a
	// temporary file in the same directory, renamed over it) and keeps its permission
	// bits; a new file gets 0644. Missing parent directories are created.
	Destination string
	// Command, if not empty, runs through `sh -c` after a render changed Destination.
	Command string
}

// ParseTemplateSpec parses the -template flag's "SOURCE:DESTINATION[:COMMAND]", the form
// consul-template takes; the command may itself contain colons.
func ParseTemplateSpec(s string) (TemplateConfig, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return TemplateConfig{}, fmt.Errorf("template %q: want SOURCE:DESTINATION[:COMMAND]", s)
	}
	tc := TemplateConfig{Source: parts[0], Destination: parts[1]}
	if len(parts) == 3 {
		tc.Command = strings.TrimSpace(parts[2])
	}
	return tc, nil
}

// Wait is consul-template's quiescence timer: after a change, a template is rendered
// once no further change came for Min, but at the latest Max after the first change of
// the burst. The zero value renders at once.
type Wait struct {
	Min, Max time.Duration
}

// ParseWait parses "MIN[:MAX]" ("2s:10s"); without MAX it is 4 × MIN, as in
// consul-template.
func ParseWait(s string) (Wait, error) {
	minStr, maxStr, hasMax := strings.Cut(s, ":")
	var w Wait
	var err error
	if w.Min, err = time.ParseDuration(minStr); err != nil {
		return Wait{}, fmt.Errorf("wait %q: min: %w", s, err)
	}
	w.Max = 4 * w.Min
	if hasMax {
		if w.Max, err = time.ParseDuration(maxStr); err != nil {
			return Wait{}, fmt.Errorf("wait %q: max: %w", s, err)
		}
	}
	if err := w.Validate(); err != nil {
		return Wait{}, fmt.Errorf("wait %q: %w", s, err)
	}
	return w, nil
}

// Validate checks 0 ≤ Min ≤ Max.
func (w Wait) Validate() error {
	switch {
	case w.Min < 0 || w.Max < 0:
		return errors.New("durations must not be negative")
	case w.Max < w.Min:
		return fmt.Errorf("max %v is less than min %v", w.Max, w.Min)
	}
	return nil
}

// tmpl is a parsed template and its rendering state; only the runner's goroutine uses it.
type tmpl struct {
	cfg  TemplateConfig
	t    *template.Template
	cur  *renderState // what the functions read during an execution
	deps map[dep]struct{}

	written bool      // a complete render reached Destination (or found it identical)
	due     time.Time // when to render next; zero: not scheduled
	burst   time.Time // the first change of the current -wait burst
}

// parseTemplate reads and parses the template of cfg.
func parseTemplate(cfg TemplateConfig) (*tmpl, error) {
	text, err := os.ReadFile(cfg.Source)
	if err != nil {
		return nil, fmt.Errorf("reading template: %w", err)
	}
	tp := &tmpl{cfg: cfg, deps: map[dep]struct{}{}}
	t, err := template.New(cfg.Source).Option("missingkey=zero").Funcs(funcMap(&tp.cur)).Parse(string(text))
	if err != nil {
		// text/template says "template: NAME:LINE: ..."; NAME is the source path.
		return nil, fmt.Errorf("%w: %s", ErrParse, strings.TrimPrefix(err.Error(), "template: "))
	}
	tp.t = t
	return tp, nil
}

// render executes the template against data. It returns the output and whether the
// render is complete (every dependency had usable data); an incomplete render's output
// and execution error are meaningless and not returned. The dependencies the template
// asked for replace tp.deps either way.
func (tp *tmpl) render(data map[dep]any, env func(string) string) (out []byte, complete bool, err error) {
	st := &renderState{data: data, used: map[dep]struct{}{}, env: env}
	tp.cur = st
	defer func() { tp.cur = nil }()
	var b bytes.Buffer
	execErr := tp.t.Execute(&b, nil)
	tp.deps = st.used
	if len(st.missing) > 0 {
		return nil, false, nil
	}
	if execErr != nil {
		return nil, true, fmt.Errorf("executing %s: %w", tp.cfg.Source, execErr)
	}
	return b.Bytes(), true, nil
}

// writeFileAtomic makes path hold data: nothing happens (false) when it already does;
// otherwise data goes to a temporary file in the same directory, with path's permission
// bits (0644 for a new file), synced, and is renamed over path (true).
func writeFileAtomic(path string, data []byte) (changed bool, err error) {
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return false, err
	}
	tmpName := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmpName)
		}
	}()
	if _, err = f.Write(data); err == nil {
		if err = f.Chmod(mode); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if err = os.Rename(tmpName, path); err != nil {
		return false, err
	}
	if d, derr := os.Open(dir); derr == nil { // make the rename durable; best effort
		d.Sync()
		d.Close()
	}
	return true, nil
}
