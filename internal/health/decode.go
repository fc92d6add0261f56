package health

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"
)

// fieldByKey maps a normalized JSON key (lower case, no '_' or '-') to the
// Definition field it sets. Built once from the struct, plus Consul's aliases.
var fieldByKey, aliasKeys = func() (map[string]string, map[string]bool) {
	m := map[string]string{}
	t := reflect.TypeFor[Definition]()
	for i := range t.NumField() {
		m[normalizeKey(t.Field(i).Name)] = t.Field(i).Name
	}
	aliases := map[string]string{"checkid": "ID", "scriptargs": "Args"}
	isAlias := map[string]bool{}
	for k, v := range aliases {
		m[k] = v
		isAlias[k] = true
	}
	return m, isAlias
}()

var durationFields = []string{"Interval", "Timeout", "TTL", "DeregisterCriticalServiceAfter"}

func normalizeKey(k string) string {
	k = strings.ToLower(k)
	return strings.NewReplacer("_", "", "-", "").Replace(k)
}

// UnmarshalJSON decodes Consul's check definition JSON: keys match field
// names case-insensitively, snake_case aliases are accepted (check_id,
// service_id, tls_skip_verify, script_args, success_before_passing, ...),
// "CheckID" and "ScriptArgs" are aliases of "ID" and "Args" (the canonical
// key wins when both are given), unknown keys are ignored, and durations are
// strings for time.ParseDuration ("10s", "1m30s") or integer nanoseconds.
// Errors are *DefinitionError.
func (d *Definition) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return invalid("check definition must be a JSON object: " + err.Error())
	}
	canon := make(map[string]json.RawMessage, len(raw))
	for _, aliases := range []bool{false, true} {
		for k, v := range raw {
			nk := normalizeKey(k)
			field, ok := fieldByKey[nk]
			if !ok || aliasKeys[nk] != aliases {
				continue
			}
			if _, dup := canon[field]; dup && aliases {
				continue
			}
			canon[field] = v
		}
	}
	durs := make([]time.Duration, len(durationFields))
	for i, f := range durationFields {
		v, ok := canon[f]
		if !ok {
			continue
		}
		delete(canon, f)
		dur, err := decodeDuration(v)
		if err != nil {
			return invalid(fmt.Sprintf("%s %s: %v", f, bytes.TrimSpace(v), err))
		}
		durs[i] = dur
	}
	buf, err := json.Marshal(canon)
	if err != nil {
		return invalid(err.Error())
	}
	type plain Definition
	var p plain
	if err := json.Unmarshal(buf, &p); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			name := te.Field[strings.LastIndex(te.Field, ".")+1:]
			return invalid(fmt.Sprintf("%s must be a JSON %s, not %s", name, jsonKind(te.Type), te.Value))
		}
		return invalid(err.Error())
	}
	*d = Definition(p)
	d.Interval, d.Timeout, d.TTL, d.DeregisterCriticalServiceAfter = durs[0], durs[1], durs[2], durs[3]
	return nil
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "integer"
	case reflect.Slice:
		return "array"
	case reflect.Map:
		return "object"
	}
	return t.String()
}

// decodeDuration accepts "10s", "" or null (zero) and integer nanoseconds.
func decodeDuration(v json.RawMessage) (time.Duration, error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || string(v) == "null" {
		return 0, nil
	}
	if v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return 0, err
		}
		if s == "" {
			return 0, nil
		}
		return time.ParseDuration(s)
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return 0, errors.New(`must be a duration string like "10s" or integer nanoseconds`)
	}
	if f != math.Trunc(f) || math.Abs(f) >= math.MaxInt64 {
		return 0, errors.New("must be integer nanoseconds")
	}
	return time.Duration(f), nil
}

// MarshalJSON writes the canonical field names, omits empty fields and
// writes durations as strings ("10s"), the form Consul's API returns.
func (d Definition) MarshalJSON() ([]byte, error) {
	type plain Definition
	str := func(v time.Duration) string {
		if v == 0 {
			return ""
		}
		return v.String()
	}
	return json.Marshal(struct {
		plain
		Interval                       string `json:",omitempty"`
		Timeout                        string `json:",omitempty"`
		TTL                            string `json:",omitempty"`
		DeregisterCriticalServiceAfter string `json:",omitempty"`
	}{plain(d), str(d.Interval), str(d.Timeout), str(d.TTL), str(d.DeregisterCriticalServiceAfter)})
}
