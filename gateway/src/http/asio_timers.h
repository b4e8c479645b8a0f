// router::timer_service on the server's io_context: the cascade's per-tier and per-route deadlines become
// steady_timers, each on its own strand. What must not go in here: what happens when a deadline passes.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>

#include "sluice/router/cascade.h"

namespace sluice::gateway {

std::shared_ptr<router::timer_service> make_asio_timers(boost::asio::io_context& ioc);

}  // namespace sluice::gateway
