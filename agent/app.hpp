#pragma once
// Composition root: builds the pipeline from the configuration and runs it until a signal.
//
//   receivers --> Intake --> Ring --> Batcher --fan-out--> Exporter (one queue each)
//
// All wiring is plain constructor injection, here and nowhere else. SIGHUP re-reads
// `config_path` and swaps what changed (exporters, batch and log settings, receivers whose
// address changed) without losing an acknowledged span.

#include <string>

#include "config/config.hpp"

namespace spanrelay {

// Runs the agent; returns the process exit code (0 after a clean SIGTERM/SIGINT drain).
// Throws std::runtime_error on start-up failure (a port in use, an unreadable CA file...).
// `config_path` is empty when running on the embedded default (nothing to reload).
int run_agent(config::Config config, std::string config_path);

}  // namespace spanrelay
