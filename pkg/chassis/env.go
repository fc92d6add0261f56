package chassis

import (
	"encoding"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// ErrMissing is the cause of a VarError for a required variable that is unset or empty.
var ErrMissing = errors.New("required but not set")

// VarError is one environment variable that could not be used.
type VarError struct {
	Var   string // the variable's name ("" when a Validate method did not name one)
	Value string // the offending value ("" when missing)
	Err   error
}

func (e *VarError) Error() string {
	switch {
	case e.Var == "":
		return e.Err.Error()
	case errors.Is(e.Err, ErrMissing):
		return e.Var + ": " + e.Err.Error()
	default:
		return fmt.Sprintf("%s=%q: %v", e.Var, e.Value, e.Err)
	}
}

func (e *VarError) Unwrap() error { return e.Err }

// ConfigError is returned by New, Run and ParseEnv when the environment cannot be
// used. It lists every bad variable, so one start reports them all; its message is one
// line. Main prints it and exits with code 2.
type ConfigError struct {
	Vars []*VarError
}

func (e *ConfigError) Error() string {
	parts := make([]string, len(e.Vars))
	for i, v := range e.Vars {
		parts[i] = v.Error()
	}
	return "bad environment: " + strings.Join(parts, "; ")
}

// Unwrap lets errors.Is and errors.As look at the individual variables.
func (e *ConfigError) Unwrap() []error {
	out := make([]error, len(e.Vars))
	for i, v := range e.Vars {
		out[i] = v
	}
	return out
}

// Validator is implemented by configuration structs that check themselves after
// ParseEnv has filled them. Return a *VarError to name the variable at fault.
type Validator interface {
	Validate() error
}

// ParseEnv fills the struct dst points to from environment variables, read with
// lookup (os.LookupEnv when nil). Fields are described by struct tags:
//
//	Port    int           `env:"PORT" default:"8080" help:"port to listen on"`
//	DB      string        `env:"DATABASE_URL" required:"true"`
//	Addr    string        `env:"WOLKE_HTTP_ADDR,CONSUL_HTTP_ADDR" default:"127.0.0.1:8500"`
//	Timeout time.Duration `env:"TIMEOUT" default:"2s"`
//	Tags    []string      `env:"TAGS"` // comma-separated
//
// env names the variable (several, comma-separated: the first one set wins). An unset
// or empty variable takes the default; a required one without a value is an error.
// Supported field types: string, bool, all int, uint and float kinds, time.Duration,
// []string and encoding.TextUnmarshaler. Nested structs (not pointers) are walked, with
// an optional `envPrefix:"DB_"` prepended to their variables' names. Fields without an
// env tag are left alone. If dst implements Validator, Validate runs after a fill
// without errors. Every problem is reported in one *ConfigError.
func ParseEnv(dst any, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("chassis: config must be a pointer to a struct, not %T", dst)
	}
	var errs []*VarError
	if err := walkEnv(v.Elem(), "", func(f envField) {
		raw, name, ok := f.lookup(lookup)
		if !ok {
			if f.required {
				errs = append(errs, &VarError{Var: f.names[0], Err: ErrMissing})
				return
			}
			if !f.hasDefault {
				return
			}
			raw, name = f.def, f.names[0]
		}
		if err := setField(f.value, raw); err != nil {
			errs = append(errs, &VarError{Var: name, Value: raw, Err: err})
		}
	}); err != nil {
		return err
	}
	if len(errs) == 0 {
		if val, ok := dst.(Validator); ok {
			if err := val.Validate(); err != nil {
				var ve *VarError
				var ce *ConfigError
				switch {
				case errors.As(err, &ce):
					errs = ce.Vars
				case errors.As(err, &ve):
					errs = append(errs, ve)
				default:
					errs = append(errs, &VarError{Err: err})
				}
			}
		}
	}
	if len(errs) > 0 {
		return &ConfigError{Vars: errs}
	}
	return nil
}

// envField is one tagged field found by walkEnv.
type envField struct {
	names      []string
	def        string
	hasDefault bool
	required   bool
	help       string
	value      reflect.Value
}

func (f envField) lookup(lookup func(string) (string, bool)) (raw, name string, ok bool) {
	for _, n := range f.names {
		if v, set := lookup(n); set && v != "" {
			return v, n, true
		}
	}
	return "", "", false
}

// walkEnv calls fn for every field with an env tag, depth first, in declaration order.
func walkEnv(v reflect.Value, prefix string, fn func(envField)) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		fv := v.Field(i)
		tag, tagged := sf.Tag.Lookup("env")
		if !tagged {
			if sf.Type.Kind() == reflect.Struct && sf.IsExported() && !implementsText(fv) && sf.Type != reflect.TypeOf(time.Time{}) {
				if err := walkEnv(fv, prefix+sf.Tag.Get("envPrefix"), fn); err != nil {
					return err
				}
			}
			continue
		}
		if !sf.IsExported() {
			return fmt.Errorf("chassis: config field %s has an env tag but is not exported", sf.Name)
		}
		if !settable(fv) {
			return fmt.Errorf("chassis: config field %s: type %s is not supported", sf.Name, sf.Type)
		}
		var names []string
		for _, n := range strings.Split(tag, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, prefix+n)
			}
		}
		if len(names) == 0 {
			return fmt.Errorf("chassis: config field %s has an empty env tag", sf.Name)
		}
		def, hasDef := sf.Tag.Lookup("default")
		req, _ := strconv.ParseBool(sf.Tag.Get("required"))
		fn(envField{names: names, def: def, hasDefault: hasDef, required: req, help: sf.Tag.Get("help"), value: fv})
	}
	return nil
}

var (
	durationType  = reflect.TypeOf(time.Duration(0))
	textUnmarshal = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

func implementsText(v reflect.Value) bool {
	return v.CanAddr() && v.Addr().Type().Implements(textUnmarshal)
}

func settable(v reflect.Value) bool {
	if implementsText(v) {
		return true
	}
	switch v.Kind() {
	case reflect.String, reflect.Bool, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	case reflect.Slice:
		return v.Type().Elem().Kind() == reflect.String
	}
	return false
}

func setField(v reflect.Value, raw string) error {
	if implementsText(v) {
		return v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(raw))
	}
	if v.Type() == durationType {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return errors.New("not a duration (e.g. 1.5s, 300ms, 2m)")
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return errors.New("not a boolean (true or false)")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("not an integer of %d bits", v.Type().Bits())
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(raw, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("not an unsigned integer of %d bits", v.Type().Bits())
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(raw, v.Type().Bits())
		if err != nil {
			return errors.New("not a number")
		}
		v.SetFloat(f)
	case reflect.Slice:
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		v.Set(reflect.ValueOf(items).Convert(v.Type()))
	}
	return nil
}

// envDoc is one line of the usage text: a variable, its default and its help.
type envDoc struct {
	Names    []string
	Default  string
	Required bool
	Help     string
}

// describeEnv lists the variables a config struct reads, for usage output.
func describeEnv(dst any) []envDoc {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	var out []envDoc
	_ = walkEnv(v.Elem(), "", func(f envField) {
		out = append(out, envDoc{Names: f.names, Default: f.def, Required: f.required, Help: f.help})
	})
	return out
}
