package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The porcupine model of one Consul KV key under get, put and check-and-set. The state
// is the key's value ("" while absent; workloads never write ""). Written values are
// unique, so a CAS on the ModifyIndex a read returned is the same as a CAS on the value
// that read returned: the model needs no indexes.

type kvOp int

const (
	opGet kvOp = iota
	opPut
	opCAS
)

type kvInput struct {
	op     kvOp
	key    string
	value  string // put, CAS: the value written
	expect string // CAS: the value read with the index it names ("" = absent, cas=0)
}

type kvOutput struct {
	value   string // get: the value read ("" = absent)
	ok      bool   // CAS: whether it swapped
	unknown bool   // put, CAS: the client got no answer; it may or may not have happened
}

var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range history {
			k := op.Input.(kvInput).key
			if _, ok := byKey[k]; !ok {
				order = append(order, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		parts := make([][]porcupine.Operation, 0, len(order))
		for _, k := range order {
			parts = append(parts, byKey[k])
		}
		return parts
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(string), input.(kvInput), output.(kvOutput)
		switch in.op {
		case opGet:
			return out.value == s, s
		case opPut:
			return true, in.value
		default: // opCAS
			if s == in.expect {
				return out.unknown || out.ok, in.value
			}
			return out.unknown || !out.ok, s
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		res := ""
		switch {
		case out.unknown:
			res = "?"
		case in.op == opGet:
			res = fmt.Sprintf("%q", out.value)
		case in.op == opCAS:
			res = fmt.Sprint(out.ok)
		default:
			res = "ok"
		}
		switch in.op {
		case opGet:
			return fmt.Sprintf("get(%s) -> %s", in.key, res)
		case opPut:
			return fmt.Sprintf("put(%s, %q) -> %s", in.key, in.value, res)
		default:
			return fmt.Sprintf("cas(%s, %q -> %q) -> %s", in.key, in.expect, in.value, res)
		}
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state) },
}

// TestKVModel checks the model itself: a history that reads an overwritten value is
// illegal, a CAS that ignores the current value is illegal, and a write whose outcome is
// unknown may or may not have happened.
func TestKVModel(t *testing.T) {
	op := func(call, ret int64, in kvInput, out kvOutput) porcupine.Operation {
		return porcupine.Operation{Input: in, Output: out, Call: call, Return: ret}
	}
	put := func(v string) kvInput { return kvInput{op: opPut, key: "k", value: v} }
	get := kvInput{op: opGet, key: "k"}
	cas := func(expect, v string) kvInput { return kvInput{op: opCAS, key: "k", expect: expect, value: v} }
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"stale read", []porcupine.Operation{
			op(0, 1, put("a"), kvOutput{}), op(2, 3, put("b"), kvOutput{}), op(4, 5, get, kvOutput{value: "a"})}, porcupine.Illegal},
		{"concurrent read", []porcupine.Operation{
			op(0, 1, put("a"), kvOutput{}), op(2, 5, put("b"), kvOutput{}), op(3, 4, get, kvOutput{value: "a"})}, porcupine.Ok},
		{"cas on a replaced value succeeds", []porcupine.Operation{
			op(0, 1, put("a"), kvOutput{}), op(2, 3, put("b"), kvOutput{}), op(4, 5, cas("a", "c"), kvOutput{ok: true})}, porcupine.Illegal},
		{"cas on the current value fails", []porcupine.Operation{
			op(0, 1, put("a"), kvOutput{}), op(2, 3, cas("a", "c"), kvOutput{ok: false})}, porcupine.Illegal},
		{"cas create", []porcupine.Operation{
			op(0, 1, cas("", "a"), kvOutput{ok: true}), op(2, 3, get, kvOutput{value: "a"})}, porcupine.Ok},
		{"unknown write seen", []porcupine.Operation{
			op(0, 100, put("a"), kvOutput{unknown: true}), op(2, 3, get, kvOutput{value: "a"})}, porcupine.Ok},
		{"unknown write never seen", []porcupine.Operation{
			op(0, 100, put("a"), kvOutput{unknown: true}), op(2, 3, get, kvOutput{value: ""})}, porcupine.Ok},
		{"unknown write seen then unseen", []porcupine.Operation{
			op(0, 100, put("a"), kvOutput{unknown: true}), op(2, 3, get, kvOutput{value: "a"}), op(4, 5, get, kvOutput{value: ""})}, porcupine.Illegal},
		{"unknown cas seen", []porcupine.Operation{
			op(0, 1, put("a"), kvOutput{}), op(2, 100, cas("a", "b"), kvOutput{unknown: true}), op(3, 4, get, kvOutput{value: "b"})}, porcupine.Ok},
	} {
		if got := porcupine.CheckOperationsTimeout(kvModel, tc.ops, 10*time.Second); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
