package config

import (
	"reflect"
	"strings"
)

// Changed lists the keys (dotted, as in the file) whose values differ
// between a and b: leaves of the file's tree, lists and rule tables
// whole.
func Changed(a, b *Config) []string {
	var out []string
	changed(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "", &out)
	return out
}

func changed(a, b reflect.Value, path string, out *[]string) {
	if a.Kind() == reflect.Struct && hooks[a.Type()] == nil {
		fields := map[string]reflect.Value{}
		eachKey(b, func(name string, f reflect.Value) { fields[name] = f })
		eachKey(a, func(name string, f reflect.Value) { changed(f, fields[name], child(path, name), out) })
		return
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*out = append(*out, path)
	}
}

// RestartOnly reports whether a reload cannot apply key: the listeners
// are opened once, and the log's format is that of the running handler.
func RestartOnly(key string) bool {
	switch {
	case key == "milter.shutdown_timeout":
		return false // read at shutdown
	case strings.HasPrefix(key, "milter."), key == "metrics.listen", key == "log.format", key == "log.output":
		return true
	}
	return false
}
