// systemd's readiness protocol (sd_notify(3)) without libsystemd: a datagram to $NOTIFY_SOCKET. A no-op when the
// variable is unset (not started by systemd with Type=notify). What must not go in here: anything that blocks.
#pragma once

#include <string_view>

namespace sluice::gateway {

// Sends `state` ("READY=1", "RELOADING=1\nMONOTONIC_USEC=...", "STOPPING=1", "STATUS=..."); false when it could
// not be sent (or there is nobody to tell).
bool sd_notify(std::string_view state);

// "RELOADING=1" with the MONOTONIC_USEC field systemd 253+ wants for Type=notify-reload.
bool sd_notify_reloading();

}  // namespace sluice::gateway
