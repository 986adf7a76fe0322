// The settings table (settings.h) as command-line flags of a CLI11 app: the training command
// registers them on the main app; a later sub-command (e.g. `rational_train prune`) can register
// the same flags on its own CLI::App and get the same names, defaults in --help and checks.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <deque>
#include <string>

#include "settings.h"

namespace rational_train {

class SettingFlags {
 public:
  // Adds every setting of settings() to `app`, with its default (that of `defaults`, a config
  // as JSON) in --help. Values are taken as text; apply() converts them.
  SettingFlags(CLI::App& app, const nlohmann::json& defaults);
  // `config` with every flag given on the command line applied, each parsed strictly
  // (parse_flag_value: throws std::invalid_argument naming the flag).
  nlohmann::json apply(nlohmann::json config) const;

 private:
  struct Bound {
    const Setting* setting;
    CLI::Option* option;
    std::string text;
    bool flag_value;
  };
  std::deque<Bound> bound_;  // stable addresses: CLI11 keeps references to text / flag_value
};

}  // namespace rational_train
