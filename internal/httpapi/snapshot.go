package httpapi

import "net/http"

// snapshot serves /v1/snapshot (GET saves, PUT restores). Being built (issue 3).
func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	writeError(w, notFound("Invalid URL path: not a recognized HTTP API endpoint"))
}
