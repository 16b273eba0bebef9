package bench

import "testing"

func TestCPUCount(t *testing.T) {
	for list, want := range map[string]int{"": 0, "1": 1, "1-3": 3, "0,2-4,7": 5, "1-1": 1} {
		if got := CPUCount(list); got != want {
			t.Errorf("CPUCount(%q) = %d, want %d", list, got, want)
		}
	}
}
