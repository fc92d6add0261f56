package health

// thresholds implements SuccessBeforePassing, FailuresBeforeWarning and
// FailuresBeforeCritical exactly like Consul's checks.StatusHandler: a
// passing or warning result needs successBeforePassing consecutive
// successes before it is reported; a critical result is reported as
// critical after failuresBeforeCritical consecutive failures, as warning
// after failuresBeforeWarning, and not at all before that.
//
// As in Consul the counters start at their thresholds, so the first result
// after Add is always reported: the registered initial status is a guess,
// not an observation. Not safe for concurrent use (the Manager's lock
// guards it).
type thresholds struct {
	successBeforePassing   int
	failuresBeforeWarning  int
	failuresBeforeCritical int
	successes              int
	failures               int
}

func newThresholds(successBeforePassing, failuresBeforeWarning, failuresBeforeCritical int) thresholds {
	if failuresBeforeWarning == 0 {
		failuresBeforeWarning = failuresBeforeCritical
	}
	return thresholds{
		successBeforePassing:   successBeforePassing,
		failuresBeforeWarning:  failuresBeforeWarning,
		failuresBeforeCritical: failuresBeforeCritical,
		successes:              successBeforePassing,
		failures:               failuresBeforeCritical,
	}
}

// apply records one probe result and returns the status to report, or
// ok=false when the result must not change the reported status yet.
func (t *thresholds) apply(status string) (report string, ok bool) {
	if status == StatusPassing || status == StatusWarning {
		t.successes++
		t.failures = 0
		if t.successes >= t.successBeforePassing {
			return status, true
		}
		return "", false
	}
	t.failures++
	t.successes = 0
	if t.failures >= t.failuresBeforeCritical {
		return StatusCritical, true
	}
	if t.failures >= t.failuresBeforeWarning {
		return StatusWarning, true
	}
	return "", false
}
