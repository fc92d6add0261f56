package chassis

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// envOf returns a LookupEnv reading m.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

type dbConfig struct {
	URL  string `env:"URL" required:"true"`
	Pool int    `env:"POOL" default:"4"`
}

type testConfig struct {
	Name     string        `env:"NAME" default:"anon"`
	Count    int           `env:"COUNT" default:"3"`
	Small    int8          `env:"SMALL"`
	Big      uint64        `env:"BIG"`
	Ratio    float64       `env:"RATIO" default:"0.5"`
	On       bool          `env:"ON"`
	Wait     time.Duration `env:"WAIT" default:"2s"`
	Tags     []string      `env:"TAGS"`
	Addr     string        `env:"PRIMARY_ADDR,FALLBACK_ADDR" default:"x:1"`
	IP       net.IP        `env:"IP"`
	Level    slog.Level    `env:"LEVEL" default:"warn"`
	DB       dbConfig      `envPrefix:"DB_"`
	Untagged string
}

func TestParseEnv(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		var c testConfig
		err := ParseEnv(&c, envOf(map[string]string{"DB_URL": "postgres://x"}))
		if err != nil {
			t.Fatal(err)
		}
		if c.Name != "anon" || c.Count != 3 || c.Ratio != 0.5 || c.Wait != 2*time.Second || c.Addr != "x:1" ||
			c.Level != slog.LevelWarn || c.DB.Pool != 4 || c.DB.URL != "postgres://x" || c.Tags != nil || c.On {
			t.Fatalf("defaults not applied: %+v", c)
		}
	})
	t.Run("values", func(t *testing.T) {
		var c testConfig
		err := ParseEnv(&c, envOf(map[string]string{
			"NAME": "bob", "COUNT": "-7", "SMALL": "127", "BIG": "18446744073709551615", "RATIO": "1e-3",
			"ON": "true", "WAIT": "150ms", "TAGS": " a, b,,c ", "FALLBACK_ADDR": "y:2", "IP": "10.0.0.1",
			"LEVEL": "debug", "DB_URL": "u", "DB_POOL": "9", "Untagged": "ignored",
		}))
		if err != nil {
			t.Fatal(err)
		}
		if c.Name != "bob" || c.Count != -7 || c.Small != 127 || c.Big != 1<<64-1 || c.Ratio != 1e-3 || !c.On ||
			c.Wait != 150*time.Millisecond || strings.Join(c.Tags, "|") != "a|b|c" || c.Addr != "y:2" ||
			!c.IP.Equal(net.ParseIP("10.0.0.1")) || c.Level != slog.LevelDebug || c.DB.Pool != 9 || c.Untagged != "" {
			t.Fatalf("values not applied: %+v", c)
		}
	})
	t.Run("first name wins", func(t *testing.T) {
		var c testConfig
		if err := ParseEnv(&c, envOf(map[string]string{"PRIMARY_ADDR": "p:1", "FALLBACK_ADDR": "f:1", "DB_URL": "u"})); err != nil {
			t.Fatal(err)
		}
		if c.Addr != "p:1" {
			t.Fatalf("Addr = %q, want the first variable's value", c.Addr)
		}
	})
	t.Run("empty is unset", func(t *testing.T) {
		var c testConfig
		err := ParseEnv(&c, envOf(map[string]string{"COUNT": "", "DB_URL": ""}))
		var ce *ConfigError
		if !errors.As(err, &ce) || len(ce.Vars) != 1 || ce.Vars[0].Var != "DB_URL" || !errors.Is(err, ErrMissing) {
			t.Fatalf("err = %v, want DB_URL missing", err)
		}
		if c.Count != 3 {
			t.Fatalf("empty COUNT did not take the default: %d", c.Count)
		}
	})
	t.Run("every bad variable reported", func(t *testing.T) {
		var c testConfig
		err := ParseEnv(&c, envOf(map[string]string{"COUNT": "many", "SMALL": "300", "WAIT": "5", "ON": "yes", "IP": "nope"}))
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v, want *ConfigError", err)
		}
		var names []string
		for _, v := range ce.Vars {
			names = append(names, v.Var)
		}
		if got := strings.Join(names, ","); got != "COUNT,SMALL,ON,WAIT,IP,DB_URL" {
			t.Fatalf("bad variables = %s", got)
		}
		msg := err.Error()
		for _, want := range []string{`COUNT="many": not an integer`, `WAIT="5": not a duration`, "DB_URL: required but not set"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q lacks %q", msg, want)
			}
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("message is not one line: %q", msg)
		}
	})
	t.Run("not a struct pointer", func(t *testing.T) {
		var c testConfig
		if err := ParseEnv(c, nil); err == nil {
			t.Fatal("a struct value was accepted")
		}
	})
	t.Run("unsupported type", func(t *testing.T) {
		var c struct {
			M map[string]string `env:"M"`
		}
		if err := ParseEnv(&c, envOf(nil)); err == nil || !strings.Contains(err.Error(), "not supported") {
			t.Fatalf("err = %v", err)
		}
	})
}

type validated struct {
	Min int `env:"MIN" default:"1"`
	Max int `env:"MAX" default:"10"`
}

func (v *validated) Validate() error {
	if v.Min > v.Max {
		return &VarError{Var: "MIN", Value: "", Err: errors.New("must not exceed MAX")}
	}
	return nil
}

func TestParseEnvValidate(t *testing.T) {
	var v validated
	if err := ParseEnv(&v, envOf(map[string]string{"MIN": "5"})); err != nil {
		t.Fatal(err)
	}
	err := ParseEnv(&v, envOf(map[string]string{"MIN": "50"}))
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Vars[0].Var != "MIN" {
		t.Fatalf("err = %v, want a ConfigError naming MIN", err)
	}
}

func TestSettings(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		bad  string // the variable named in the error, "" for none
		want func(settings) bool
	}{
		{env: nil, want: func(s settings) bool {
			return s.Port == 0 && s.agentURL.Host == "127.0.0.1:8500" && s.CheckInterval == time.Second && s.DrainTimeout == 30*time.Second
		}},
		{env: map[string]string{"PORT": "8080", "CONSUL_HTTP_ADDR": "https://agent:8501"}, want: func(s settings) bool {
			return s.Port == 8080 && s.agentURL.Scheme == "https" && s.agentURL.Host == "agent:8501"
		}},
		{env: map[string]string{"WOLKE_HTTP_ADDR": "a:1", "CONSUL_HTTP_ADDR": "b:2"}, want: func(s settings) bool { return s.agentURL.Host == "a:1" }},
		{env: map[string]string{"PORT": "http"}, bad: "PORT"},
		{env: map[string]string{"PORT": "70000"}, bad: "PORT"},
		{env: map[string]string{"ADMIN_PORT": "-1"}, bad: "ADMIN_PORT"},
		{env: map[string]string{"BIND_ADDR": "localhost"}, bad: "BIND_ADDR"},
		{env: map[string]string{"WOLKE_HTTP_ADDR": "ftp://x:1"}, bad: "WOLKE_HTTP_ADDR"},
		{env: map[string]string{"LOG_LEVEL": "loud"}, bad: "LOG_LEVEL"},
		{env: map[string]string{"LOG_FORMAT": "xml"}, bad: "LOG_FORMAT"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"}, bad: "OTEL_TRACES_EXPORTER"},
		{env: map[string]string{"DRAIN_TIMEOUT": "0s"}, bad: "DRAIN_TIMEOUT"},
	} {
		var s settings
		err := ParseEnv(&s, envOf(tc.env))
		if tc.bad == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.env, err)
			} else if !tc.want(s) {
				t.Errorf("%v: settings %+v", tc.env, s)
			}
			continue
		}
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Vars[0].Var != tc.bad {
			t.Errorf("%v: err = %v, want one naming %s", tc.env, err, tc.bad)
		}
	}
}

func TestNewReportsServiceAndChassisVariables(t *testing.T) {
	var cfg struct {
		DB string `env:"DATABASE_URL" required:"true"`
	}
	_, err := New(Service{Name: "svc", Config: &cfg, LookupEnv: envOf(map[string]string{"PORT": "abc"})})
	var ce *ConfigError
	if !errors.As(err, &ce) || len(ce.Vars) != 2 || ce.Vars[0].Var != "PORT" || ce.Vars[1].Var != "DATABASE_URL" {
		t.Fatalf("err = %v, want PORT and DATABASE_URL", err)
	}
	if ExitCode(err) != 2 {
		t.Fatalf("exit code %d, want 2", ExitCode(err))
	}
}

func TestServiceValidate(t *testing.T) {
	h := http.NotFoundHandler()
	for _, s := range []Service{
		{Name: ""},
		{Name: "1abc"},
		{Name: "has space"},
		{Name: "ok", Handler: h, Setup: func(context.Context, *Instance) (http.Handler, error) { return nil, nil }},
		{Name: "ok", Tasks: map[string]Task{"help": {Run: func(context.Context, *Instance, []string) error { return nil }}}},
		{Name: "ok", Tasks: map[string]Task{"x": {}}},
		{Name: "ok", Requires: []string{"not/valid"}},
	} {
		if err := s.validate(); err == nil {
			t.Errorf("%+v was accepted", s)
		}
	}
}
