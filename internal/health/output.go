package health

import "fmt"

// result is what one probe run observed.
type result struct {
	status string
	output string
}

func passing(out string) result  { return result{StatusPassing, out} }
func warning(out string) result  { return result{StatusWarning, out} }
func critical(out string) result { return result{StatusCritical, out} }

// truncate keeps the first max bytes of s and says so, the way Consul's
// TTL check does: "<first max bytes> ... (captured max of total bytes)".
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return fmt.Sprintf("%s ... (captured %d of %d bytes)", s[:max], max, len(s))
}

// tailBuffer is an io.Writer that keeps the last max bytes written and
// counts all of them (Consul keeps a script's output in a circular buffer:
// the end of a failing script's output is the useful part).
type tailBuffer struct {
	max   int
	buf   []byte
	total int64
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.total += int64(len(p))
	if len(p) >= b.max {
		b.buf = append(b.buf[:0], p[len(p)-b.max:]...)
		return len(p), nil
	}
	if over := len(b.buf) + len(p) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// String returns the kept bytes, prefixed as Consul does when some were dropped.
func (b *tailBuffer) String() string {
	if b.total > int64(len(b.buf)) {
		return fmt.Sprintf("Captured %d of %d bytes\n...\n%s", len(b.buf), b.total, b.buf)
	}
	return string(b.buf)
}
