package daemon

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSoftMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name, gomemlimit, file, content string
		want                            int64
		ok                              bool
	}{
		{"cgroup v2 limit", "", "memory.max", "268435456\n", 214748364, true},
		{"cgroup v2 no limit", "", "memory.max", "max\n", 0, false},
		{"cgroup v1 limit", "", "memory/memory.limit_in_bytes", "268435456\n", 214748364, true},
		{"cgroup v1 no limit", "", "memory/memory.limit_in_bytes", "9223372036854771712\n", 0, false},
		{"GOMEMLIMIT set", "300MiB", "memory.max", "268435456\n", 0, false},
		{"no cgroup files", "", "", "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.file != "" {
				os.MkdirAll(filepath.Dir(filepath.Join(root, tc.file)), 0o755)
				os.WriteFile(filepath.Join(root, tc.file), []byte(tc.content), 0o644)
			}
			got, ok := SoftMemoryLimit(tc.gomemlimit, root)
			if got != tc.want || ok != tc.ok {
				t.Errorf("got %d %v, want %d %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
