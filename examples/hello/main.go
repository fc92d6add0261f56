// Command hello is the smallest chassis service: it answers every request with a
// greeting that `wolke kv put config/hello/greeting ...` changes while it runs.
package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/wolke-platform/wolke/pkg/chassis"
)

func main() {
	chassis.Main(chassis.Service{
		Name: "hello", Version: "1.0.0",
		Setup: func(ctx context.Context, in *chassis.Instance) (http.Handler, error) {
			greeting := in.Dynamic().String("greeting", "hello")
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%s from %s\n", greeting.Get(), in.ID())
			}), nil
		},
	})
}
