package health

import "errors"

// Sentinel errors. Match them with errors.Is; the HTTP layer maps them to
// status codes in one table.
var (
	// ErrInvalidDefinition is wrapped by every error that Validate or
	// JSON decoding returns for a bad check definition (HTTP 400).
	ErrInvalidDefinition = errors.New("health: invalid check definition")
	// ErrScriptsDisabled is returned for a script check when the Manager's
	// Config.EnableScriptChecks is false (HTTP 400, like Consul). It is also
	// an ErrInvalidDefinition.
	ErrScriptsDisabled = errors.New("health: script checks are disabled; start the agent with -enable-script-checks")
	// ErrUnknownCheck is returned for a check ID the Manager does not run (HTTP 404).
	ErrUnknownCheck = errors.New("health: unknown check")
	// ErrNotTTL is returned by UpdateTTL for a check that is not a TTL check (HTTP 400).
	ErrNotTTL = errors.New("health: not a TTL check")
	// ErrInvalidStatus is returned for a status other than passing, warning or critical.
	ErrInvalidStatus = errors.New("health: invalid check status")
	// ErrShutdown is returned by Add after Shutdown.
	ErrShutdown = errors.New("health: manager is shut down")
)

// DefinitionError is a one-line reason why a check definition is invalid,
// in Consul's wording where Consul has one. Its Error() is the bare reason,
// ready to be sent to a client.
type DefinitionError struct {
	Reason string
	cause  error // an extra sentinel such as ErrScriptsDisabled, or nil
}

func (e *DefinitionError) Error() string { return e.Reason }

// Unwrap makes errors.Is(err, ErrInvalidDefinition) true, plus the cause.
func (e *DefinitionError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrInvalidDefinition, e.cause}
	}
	return []error{ErrInvalidDefinition}
}

func invalid(reason string) error { return &DefinitionError{Reason: reason} }
