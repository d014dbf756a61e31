package milter

import (
	"context"
	"time"
)

// future is a check running in the background; the SMTP dialogue goes on
// while DNS answers come in.
type future[T any] struct {
	done    chan struct{}
	val     T
	started time.Time
}

func startFuture[T any](fn func() T) *future[T] {
	f := &future[T]{done: make(chan struct{}), started: time.Now()}
	go func() {
		f.val = fn()
		close(f.done)
	}()
	return f
}

// resolved is a future whose value is already known.
func resolved[T any](v T) *future[T] {
	f := &future[T]{done: make(chan struct{}), val: v, started: time.Now()}
	close(f.done)
	return f
}

// wait returns the value, or ok=false when ctx ends first.
func (f *future[T]) wait(ctx context.Context) (v T, ok bool) {
	select {
	case <-f.done:
		return f.val, true
	default:
	}
	select {
	case <-f.done:
		return f.val, true
	case <-ctx.Done():
		return v, false
	}
}

// dependency is a future a check waits for.
type dependency interface{ ready() bool }

// ready reports whether wait would return at once. A nil future is
// ready: there is nothing to wait for.
func (f *future[T]) ready() bool {
	if f == nil {
		return true
	}
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}
