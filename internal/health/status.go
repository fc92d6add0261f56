package health

import "time"

// Check statuses: exactly Consul's strings (api.HealthPassing etc.).
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
)

// ValidStatus reports whether s is passing, warning or critical.
func ValidStatus(s string) bool {
	return s == StatusPassing || s == StatusWarning || s == StatusCritical
}

// Update is the reported state of a check after a change. It is delivered
// through Config.Notify and returned by Manager.Status.
type Update struct {
	CheckID string
	Status  string
	Output  string
	At      time.Time // when the Manager recorded the change (Config.Clock)
}

// Deregistration asks the agent to deregister ServiceID because its check
// CheckID has been critical for longer than the check's
// DeregisterCriticalServiceAfter. It is sent once per critical period.
type Deregistration struct {
	CheckID       string
	ServiceID     string
	CriticalSince time.Time
	After         time.Duration // the effective DeregisterCriticalServiceAfter
}
