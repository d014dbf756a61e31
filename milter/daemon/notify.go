package daemon

import (
	"log/slog"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// The sd_notify(3) protocol tells systemd (Type=notify) where vouch is in
// its life: "started" only once the MTA can connect, so units ordered
// After=vouch (Postfix) do not start into 451s; "stopping" at once on
// SIGTERM; "reloading" while a SIGHUP is applied. Without NOTIFY_SOCKET
// (no systemd, Docker, a terminal) every call does nothing.

// notifyReady says the milter and metrics listeners are serving.
func notifyReady(log *slog.Logger) { sdNotify(log, sd.SdNotifyReady) }

// notifyStopping says vouch is draining its sessions before it exits.
func notifyStopping(log *slog.Logger) { sdNotify(log, sd.SdNotifyStopping) }

// notifyReloading says a reload has begun; call the function it returns
// when the reload is done, whatever its outcome: vouch serves either way.
func notifyReloading(log *slog.Logger) (done func()) {
	sdNotify(log, sd.SdNotifyReloading)
	return func() { sdNotify(log, sd.SdNotifyReady) }
}

func sdNotify(log *slog.Logger, state string) {
	// The environment is kept: the notifications go on for the life of
	// the process (reloads, stop), not only at start-up.
	if _, err := sd.SdNotify(false, state); err != nil {
		log.Warn("cannot notify the service manager", "state", state, "err", err)
	}
}
