#pragma once
// Composition root: builds the pipeline from the configuration and runs it until a signal.
//
//   receivers --> Intake --> Ring --> Batcher --fan-out--> Exporter (one queue each)
//
// All wiring is plain constructor injection, here and nowhere else.

#include "config/config.hpp"

namespace spanrelay {

// Runs the agent; returns the process exit code (0 after a clean SIGTERM/SIGINT drain).
// Throws std::runtime_error on start-up failure (a port in use, an unreadable CA file...).
int run_agent(const config::Config& config);

}  // namespace spanrelay
